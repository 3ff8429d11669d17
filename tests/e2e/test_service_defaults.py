"""What the two services must agree on when nobody configures them."""

from __future__ import annotations


def test_both_services_default_to_the_same_base_model(monkeypatch) -> None:
    """Services started by hand, with nothing configured, must accept each other's adapters."""
    from ocrtune_inference.settings import InferenceSettings
    from ocrtune_shared.finetune import DEFAULT_BASE_MODEL
    from ocrtune_trainer.settings import TrainerSettings

    for name in ("OCRTUNE_INFERENCE_MODEL", "OCRTUNE_TRAINER_BASE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert InferenceSettings().model == TrainerSettings().base_model == DEFAULT_BASE_MODEL
