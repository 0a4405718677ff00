"""The main job: `python train.py <overrides>` (Hydra; see configs/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from ttt.run import run

    metrics = run(cfg)
    if not cfg.get("objective"):
        return None
    value = (metrics or {}).get(cfg.objective)  # what a sweeper (configs/hparams_search/) optimises
    if value is None:
        raise ValueError(f"objective={cfg.objective!r}: this run's metrics have no such value: {metrics}")
    return float(value)


if __name__ == "__main__":
    main()
