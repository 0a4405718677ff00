// Click a column heading of a table.sortable to sort its rows by that column (again: reverse).
// Cells sort by their data-sort value: numbers as numbers, text as text, empty cells last.
function compareCells(a, b, ascending) {
  const empty = (v) => v === undefined || v === "";
  if (empty(a) || empty(b)) return empty(a) - empty(b);
  const x = Number(a), y = Number(b);
  const order = !isNaN(x) && !isNaN(y) ? x - y : a.localeCompare(b);
  return ascending ? order : -order;
}
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((heading, column) => {
    heading.addEventListener("click", () => {
      const ascending = heading.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach((h) => h.removeAttribute("aria-sort"));
      heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const value = (row) => row.cells[column].dataset.sort;
      body.append(...[...body.rows].sort((r, s) => compareCells(value(r), value(s), ascending)));
    });
  });
});
