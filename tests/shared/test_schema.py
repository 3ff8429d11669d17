from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from ocrtune_shared.adapters import AdapterManifest
from ocrtune_shared.cer import character_error_rate, normalize
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.finetune import REFERENCE_TARGET_MODULES, DatasetSpec, FinetuneRequest
from ocrtune_shared.jobs import JobState, can_transition
from ocrtune_shared.ocr import OCRJSONRequest


def test_finetune_defaults_are_the_reference_recipe():
    request = FinetuneRequest(adapter_name="zh", train={"uri": "data/train.parquet"})
    hp = request.hyperparameters
    assert (hp.rank, hp.alpha, hp.dropout, hp.bias.value) == (16, 16, 0.0, "none")
    assert hp.target_modules == REFERENCE_TARGET_MODULES
    assert (hp.per_device_batch_size, hp.gradient_accumulation_steps) == (2, 4)
    assert (hp.max_steps, hp.warmup_steps, hp.lr_scheduler) == (60, 5, "linear")
    assert (hp.learning_rate, hp.weight_decay, hp.optimizer, hp.seed) == (2e-4, 0.001, "adamw_8bit", 3407)
    assert request.train.columns.image == "image" and request.train.columns.text == "text"


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({"adapter_name": "../x", "train": {"uri": "a.parquet"}}, "adapter_name"),
        ({"adapter_name": "ok", "train": {"uri": "ftp://host/a"}}, "scheme 'ftp'"),
        ({"adapter_name": "ok", "train": {"uri": " "}}, "empty"),
        ({"adapter_name": "ok", "train": {"uri": "a"}, "hyperparameters": {"rank": 0}}, "rank"),
        ({"adapter_name": "ok", "train": {"uri": "a"}, "hyperparameters": {"max_steps": 3, "warmup_steps": 9}}, "warmup"),
        ({"adapter_name": "ok", "train": {"uri": "a"}, "hyperparameters": {"optimizer": "magic"}}, "optimizer"),
        ({"adapter_name": "ok", "train": {"uri": "a"}, "hyperparameters": {"target_modules": ["a.b"]}}, "plain module"),
        ({"adapter_name": "ok", "train": {"uri": "a"}, "hyperparameters": {"target_modules": []}}, "at least one"),
    ],
)
def test_bad_finetune_requests_name_the_problem(payload, fragment):
    with pytest.raises(ValidationError) as info:
        FinetuneRequest.model_validate(payload)
    assert fragment in str(info.value)


def test_dataset_uri_schemes():
    for uri in ["/data/x.parquet", "file:///data/x", "hf://datasets/a/b", "s3://b/k", "https://h/x.parquet"]:
        assert DatasetSpec(uri=uri).uri == uri


def test_job_state_machine():
    assert can_transition(JobState.validating, JobState.queued)
    assert can_transition(JobState.queued, JobState.running)
    assert can_transition(JobState.running, JobState.succeeded)
    assert can_transition(JobState.running, JobState.cancelled)
    assert not can_transition(JobState.succeeded, JobState.running)
    assert not can_transition(JobState.failed, JobState.queued)
    assert not can_transition(JobState.validating, JobState.running)
    assert {s for s in JobState if s.terminal} == {JobState.succeeded, JobState.failed, JobState.cancelled}


def test_ocr_json_request_needs_exactly_one_image_source():
    assert OCRJSONRequest(image_base64="aGk=").image_url is None
    for payload in [{}, {"image_base64": "aGk=", "image_url": "https://x/y.png"}]:
        with pytest.raises(ValidationError, match="exactly one"):
            OCRJSONRequest.model_validate(payload)


def test_cer_corpus_and_mean_with_normalization():
    # Full-width digits and spaces normalize away; one substitution in four characters.
    result = character_error_rate(["一 二三４", "己已"], ["一二三4", "己已"])
    assert result.corpus_cer == 0.0 and result.mean_cer == 0.0
    result = character_error_rate(["一二三5", "己"], ["一二三4", "己已"])
    assert result.corpus_cer == pytest.approx(2 / 6)
    assert result.mean_cer == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert normalize("ＡＢ　c") == "ABc"
    with pytest.raises(ValueError):
        character_error_rate(["a"], [])


def test_manifest_round_trips_and_refuses_path_names():
    manifest = AdapterManifest(
        name="zh", version=2, base_model="tiny", model_family="qwen2_vl", rank=16, alpha=16,
        target_modules=["q_proj"], created_at=datetime.now(timezone.utc),
    )
    assert AdapterManifest.model_validate_json(manifest.model_dump_json()) == manifest
    with pytest.raises(ValidationError):
        AdapterManifest.model_validate({**manifest.model_dump(), "name": "../zh"})


def test_service_error_renders_the_one_error_body():
    error = ServiceError(404, ErrorCode.adapter_not_found, "adapter 'x' is not in the store", where="X-Adapter")
    body = error.response().model_dump(mode="json")
    assert body == {"error": {"code": "adapter_not_found", "message": "adapter 'x' is not in the store", "where": "X-Adapter"}}
