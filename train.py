"""The main job: `python train.py <overrides>` (Hydra; see configs/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from ttt.report import MergeError
    from ttt.resume import ResumeMismatch
    from ttt.run import RunFailed, run
    from ttt.settings import SettingsError

    try:
        metrics = run(cfg)
    except (SettingsError, ResumeMismatch, RunFailed, MergeError) as error:  # said in full: no traceback
        raise SystemExit(f"error: {error}") from None
    if not cfg.get("objective"):
        return None
    value = (metrics or {}).get(cfg.objective)  # what a sweeper (configs/hparams_search/) optimises
    if value is None:
        raise ValueError(f"objective={cfg.objective!r}: this run's metrics have no such value: {metrics}")
    return float(value)


if __name__ == "__main__":
    main()
