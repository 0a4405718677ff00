"""The main job: `python train.py <overrides>` (Hydra; see configs/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from ttt.run import run

    run(cfg)


if __name__ == "__main__":
    main()
