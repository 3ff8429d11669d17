"""``AsyncOCRTuneClient`` against the services the demo left running, over real HTTP.

The methods the async client lacked before it became a transport of the shared operation
table (``ocr_stream``, ``upload_adapter``, ``iter_jobs``, ``wait``, ``wait_ready``) and the
typed answers of adapter load and unload, each with its error path.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from ocrtune_client import AsyncOCRTuneClient, OCRTuneClient, OCRTuneError
from ocrtune_devkit.processes import free_port
from ocrtune_shared.adapters import AdapterLoadResponse, AdapterUnloadResponse
from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.jobs import JobState


def _client(services) -> AsyncOCRTuneClient:
    return AsyncOCRTuneClient(services.inference_url, services.trainer_url)


def test_async_streamed_ocr_ends_with_the_full_response(services, held_out_png: Path) -> None:
    async def scenario() -> None:
        async with _client(services) as client:
            events = [e async for e in client.ocr_stream(held_out_png, adapter="demo-zh")]
            whole = await client.ocr(held_out_png, adapter="demo-zh")
            assert events and events[-1].done and events[-1].response is not None
            assert "".join(e.delta for e in events) == events[-1].response.text == whole.text
            assert events[-1].response.adapter == services.summary["adapter"]
            with pytest.raises(OCRTuneError) as caught:
                [e async for e in client.ocr_stream(held_out_png, adapter="no-such-adapter")]
            assert caught.value.status == 404 and caught.value.code == ErrorCode.adapter_not_found

    anyio.run(scenario)


def test_async_upload_publishes_an_adapter_that_is_served(services, held_out_png: Path) -> None:
    """The demo's own adapter folder, uploaded under a new name, reads as the original does."""
    name, version = services.summary["adapter"].split("@")
    folder = services.workdir / "adapters" / name / version

    async def scenario() -> None:
        async with _client(services) as client:
            info = await client.upload_adapter(folder, name="async-upload")
            assert (info.name, info.latest) == ("async-upload", True)
            original = await client.ocr(held_out_png, adapter=services.summary["adapter"])
            uploaded = await client.ocr(held_out_png, adapter=f"async-upload@{info.version}")
            assert uploaded.adapter == f"async-upload@{info.version}" and uploaded.text == original.text
            with pytest.raises(ValueError, match="not a PEFT adapter folder"):
                await client.upload_adapter(folder.parent, name="async-upload")

    anyio.run(scenario)


def test_load_and_unload_answer_typed_models(services) -> None:
    adapter = services.summary["adapter"]

    async def scenario() -> None:
        async with _client(services) as client:
            loaded = await client.load_adapter("demo-zh")
            assert loaded == AdapterLoadResponse(adapter=adapter, status="loaded")
            unloaded = await client.unload_adapter("demo-zh")
            assert isinstance(unloaded, AdapterUnloadResponse) and adapter in unloaded.unloaded
            with pytest.raises(OCRTuneError) as caught:
                await client.load_adapter("no-such-adapter")
            assert caught.value.status == 404

    anyio.run(scenario)
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        assert client.load_adapter("demo-zh").adapter == adapter
        assert adapter in client.unload_adapter(adapter).unloaded
        with pytest.raises(OCRTuneError) as caught:
            client.unload_adapter("no-such-adapter")
        assert caught.value.code == ErrorCode.adapter_not_found


def test_async_jobs_iterate_and_wait(services) -> None:
    job_id = services.summary["job_id"]

    async def scenario() -> list[str]:
        async with _client(services) as client:
            listed = [job.id async for job in client.iter_jobs()]
            succeeded = [job async for job in client.iter_jobs(JobState.succeeded)]
            assert job_id in {job.id for job in succeeded}
            assert {job.state for job in succeeded} == {JobState.succeeded}
            finished = await client.wait(job_id, timeout=30, poll_s=0.1)
            assert finished.state == JobState.succeeded
            with pytest.raises(OCRTuneError) as caught:
                await client.wait("ftjob-nope", timeout=5)
            assert caught.value.code == ErrorCode.job_not_found
            return listed

    listed = anyio.run(scenario)
    assert job_id in listed and len(listed) == len(set(listed))
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        assert [job.id for job in client.iter_jobs()] == listed


def test_async_wait_ready(services) -> None:
    async def scenario() -> None:
        async with _client(services) as client:
            await client.wait_ready(timeout=30)
            assert await client.ready("inference") and await client.ready("trainer")
        closed = f"http://127.0.0.1:{free_port()}"
        async with AsyncOCRTuneClient(closed, services.trainer_url) as client:
            assert not await client.ready("inference")
            with pytest.raises(TimeoutError, match="inference"):
                await client.wait_ready(timeout=1)

    anyio.run(scenario)


def test_checkpoints_and_event_pages_in_both_transports(services) -> None:
    """The demo's job: its events read page by page equal its events read whole; an unknown job is a 404."""
    job_id = services.summary["job_id"]
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        whole = client.event_page(job_id, limit=1000).events
        pages, after = [], 0
        while True:
            page = client.event_page(job_id, after=after, limit=3)
            pages += page.events
            if page.next_after is None:
                break
            after = page.next_after
        assert [e.seq for e in pages] == [e.seq for e in whole] and len(whole) > 3
        evals = client.event_page(job_id, event_type="eval").events
        assert evals and {e.type.value for e in evals} == {"eval"}
        listed = client.checkpoints(job_id)
        assert listed.job_id == job_id
        with pytest.raises(OCRTuneError) as caught:
            client.checkpoints("ftjob-nope")
        assert caught.value.code == ErrorCode.job_not_found

    async def scenario() -> None:
        async with _client(services) as client:
            assert [e.seq for e in (await client.event_page(job_id, limit=1000)).events] == [e.seq for e in whole]
            assert (await client.checkpoints(job_id)).job_id == job_id

    anyio.run(scenario)
