"""`llm.mode: batch`: a stage's uncached requests bought through the endpoint's Batch API.

How: the stage's own logic runs as passes (`run_passes`). In a pass the client answers
from the cache and parks every miss (`defer.Deferrals`); the misses are submitted as
batches (`/v1/files` + `/v1/batches`, one model per file, at most
`llm.batch_max_requests` lines and `llm.batch_max_mb` per file, `custom_id` = the cache
key), the stage waits for them, and their answers go into the cache under the very keys an
online call would use. The next pass gets one phase further (evolve, judge, answer,
tests, re-answers); a pass without misses is the result. So the data are byte-identical
to an online run, a run may switch modes half-way, and a re-run pays nothing.

Exactly once (see `batchstore`): the intent is committed before the upload, every batch
carries its tag in `metadata`, and a start reconciles with `batches.list` (all pages), so
a batch whose creator died before recording its id is adopted, never submitted again.
Lines that failed or expired are resubmitted alone in a later pass (at most
`llm.max_attempts` times in one run); the completed lines of an expired batch are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai
from tqdm import tqdm

from evolcoder.config import LLMConfig
from evolcoder.errors import BatchesInFlight, BudgetExhausted, ConfigError, EndpointDown
from evolcoder.llm.base import ChatRequest, Completion, TransientError
from evolcoder.llm.batchstore import BatchStore, Job, pid_alive
from evolcoder.llm.cache import CallLog
from evolcoder.llm.client import LLMClient
from evolcoder.llm.defer import Deferrals

T = TypeVar("T")
TERMINAL = ("completed", "failed", "expired", "cancelled")
TAG_KEY = "evolcoder_tag"


def request_line(key: str, request: ChatRequest, provider: Any) -> dict[str, Any]:
    """One batch line: the same body the online provider sends, under the request's cache key."""
    body: dict[str, Any] = {"temperature": request.temperature, "top_p": request.top_p,
                            "max_tokens": request.max_tokens, "seed": request.seed}
    if hasattr(provider, "api_model"):  # raw /v1/completions (eval generation): the prompt verbatim
        body = {"model": provider.api_model, "prompt": request.messages[-1][1], **body}
        if request.stop:
            body["stop"] = list(request.stop)
        return {"custom_id": key, "method": "POST", "url": "/v1/completions", "body": body}
    body = {"model": provider.model,
            "messages": [{"role": role, "content": content} for role, content in request.messages], **body}
    return {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}


def chunks(lines: list[bytes], max_lines: int, max_bytes: int) -> list[list[int]]:
    """Indices of `lines` split into files of at most `max_lines` lines and `max_bytes` bytes."""
    out: list[list[int]] = [[]]
    size = 0
    for i, line in enumerate(lines):
        if out[-1] and (len(out[-1]) >= max_lines or size + len(line) > max_bytes):
            out.append([])
            size = 0
        out[-1].append(i)
        size += len(line)
    return [c for c in out if c]


class Batcher:
    """Submits, adopts, waits for and consumes the batches of one stage's client."""

    def __init__(self, client: LLMClient, cfg: LLMConfig, progress: bool = True) -> None:
        api = getattr(client.provider, "client", None)
        if not isinstance(api, openai.AsyncOpenAI):
            raise ConfigError(f"params: llm.mode: batch needs evolver.provider openai (an OpenAI-compatible "
                              f"endpoint with /v1/batches); {client.provider.name} answers in-process")
        self.client = client
        self.cfg = cfg
        self.api: openai.AsyncOpenAI = api
        self.progress = progress
        self.store = BatchStore(client.cache.path)
        self.endpoint = f"{client.endpoint}|{client.provider.name}:{client.provider.model}"
        self.failures: Counter[str] = Counter()  # failed lines per key in this run
        self.given_up: dict[str, str] = {}
        self.paid = Counter()  # requests, prompt_tokens, completion_tokens answered by batches here
        self.batches = 0

    # -- start ----------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Preflight (the endpoint has a Batch API) and adopt what earlier processes submitted."""
        remote = await self._list_all()
        by_tag = {(b.metadata or {}).get(TAG_KEY): b for b in remote}
        for job in self.store.open_jobs(self.endpoint):
            if job.batch_id or pid_alive(job.pid):
                continue
            found = by_tag.get(job.tag)
            if found is not None:  # created by a process that died before it recorded the id
                self.store.set_batch(job.tag, found.id, found.status)
            else:  # never created: nothing was billed, its lines are misses again
                self.store.abandon(job.tag)

    async def _list_all(self) -> list[Any]:
        try:
            return [b async for b in self.api.batches.list(limit=100)]
        except openai.NotFoundError as exc:
            raise ConfigError(f"params: llm.mode: batch, but {self.client.endpoint} has no Batch API (HTTP 404 on "
                              f"/v1/batches): set llm.mode: online for this endpoint. {exc.message}") from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ConfigError(f"{self.client.endpoint} rejected the API key (HTTP {exc.status_code}) on "
                              f"/v1/batches: {exc.message}") from exc

    # -- one pass's misses -------------------------------------------------------------
    async def settle(self, misses: dict[str, ChatRequest]) -> None:
        """Submit the misses not already in flight, then wait for every open batch and consume it."""
        in_flight = self.store.pending_keys(self.endpoint)
        new = {k: r for k, r in misses.items() if k not in in_flight and self.client.cache.get(k) is None}
        if new:
            await self._submit_all(new)
        jobs = [j for j in self.store.open_jobs(self.endpoint) if j.batch_id]
        if not self.cfg.batch_wait:  # one look: consume what has ended, leave the rest running
            jobs = await self._wait(jobs, misses, once=True)
            if jobs:
                raise BatchesInFlight(f"{len(jobs)} batches in flight; run `dvc repro` again later "
                                      "(llm.batch_wait is false: nothing was written)")
        await self._wait(jobs, misses)

    async def _submit_all(self, new: dict[str, ChatRequest]) -> None:
        keys = list(new)
        limit = self.client.max_calls
        if limit and self.paid["submitted"] + len(keys) > limit:  # llm.max_calls counts batch lines too
            raise BudgetExhausted(f"llm.max_calls={limit} paid calls reached in stage {self.client.stage or '?'}: "
                                  f"{self.paid['submitted']} requests went out in batches and {len(keys)} more are "
                                  "due; completed requests are cached, re-run with a higher llm.max_calls to continue")
        self.paid["submitted"] += len(keys)
        lines = [(json.dumps(request_line(k, new[k], self.client.provider), ensure_ascii=False) + "\n").encode()
                 for k in keys]
        max_bytes = int(self.cfg.batch_max_mb * 1_000_000)
        for part in chunks(lines, self.cfg.batch_max_requests, max_bytes):
            await self._submit([keys[i] for i in part], [new[keys[i]] for i in part], b"".join(lines[i] for i in part))

    async def _submit(self, keys: list[str], requests: list[ChatRequest], data: bytes) -> None:
        """Record the intent, upload, create: each step committed before the next one starts."""
        budget = self.client.budget
        reserved = budget.reserve(requests, batch=True) if budget is not None else 0.0
        sha = hashlib.sha256(data).hexdigest()
        tag = f"evolcoder-{sha[:12]}-{uuid.uuid4().hex[:8]}"
        url = json.loads(data.split(b"\n", 1)[0])["url"]
        self.store.record_intent(tag, endpoint=self.endpoint, stage=self.client.stage, model=self.client.provider.model,
                                 url=url, sha256=sha, nbytes=len(data), keys=keys, reserved_usd=reserved)
        uploaded = await self._call(self.api.files.create(file=(f"{tag}.jsonl", data), purpose="batch"), "upload")
        self.store.set_file(tag, uploaded.id)
        try:
            batch = await self.api.batches.create(input_file_id=uploaded.id, endpoint=url,  # type: ignore[arg-type]
                                                  completion_window="24h",
                                                  metadata={TAG_KEY: tag, "evolcoder_stage": self.client.stage})
        except (openai.APIConnectionError, openai.InternalServerError):
            batch = await self._find_created(tag)  # it may exist although the answer never came
        self.store.set_batch(tag, batch.id, batch.status)
        self.batches += 1

    async def _find_created(self, tag: str) -> Any:
        """After a create whose answer was lost: the batch, if the provider made it.

        Never a second create here: if the batch does not show up, the stage stops, and the
        next run's reconciliation decides (adopt it if it appeared by then, else resubmit).
        """
        for _ in range(3):
            for b in await self._list_all():
                if (b.metadata or {}).get(TAG_KEY) == tag:
                    return b
            await asyncio.sleep(min(5.0, self.cfg.batch_poll_s))
        raise EndpointDown(f"batches.create at {self.client.endpoint} for {tag} got no answer and no batch with "
                           "that tag is listed; nothing was written. A re-run adopts the batch if it appears, "
                           "else submits the requests again")

    async def _call(self, coro: Awaitable[Any], what: str) -> Any:
        try:
            return await coro
        except openai.NotFoundError as exc:
            raise ConfigError(f"params: llm.mode: batch: {self.client.endpoint} has no /v1/files ({what}: HTTP 404): "
                              f"set llm.mode: online. {exc.message}") from exc

    # -- waiting and consuming ---------------------------------------------------------
    async def _wait(self, jobs: list[Job], misses: dict[str, ChatRequest], once: bool = False) -> list[Job]:
        """Poll every `llm.batch_poll_s` until all open batches ended (`once`: one look), consuming
        each as it ends; the batches still running."""
        total = sum(j.lines for j in jobs)
        bar = tqdm(total=total, desc=f"{self.client.stage or 'stage'} batches", unit="req",
                   disable=not self.progress)
        try:
            while jobs:
                statuses: Counter[str] = Counter()
                done = 0
                still: list[Job] = []
                for job in jobs:
                    batch = await self.api.batches.retrieve(job.batch_id)  # type: ignore[arg-type]
                    statuses[batch.status] += 1
                    counts = batch.request_counts
                    done += (counts.completed + counts.failed) if counts else 0
                    if batch.status in TERMINAL:
                        await self._consume(job, batch, misses)
                    else:
                        still.append(job)
                bar.n = min(total, done)
                bar.set_postfix_str(", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
                jobs = still
                if once:
                    return jobs
                if jobs:
                    await asyncio.sleep(self.cfg.batch_poll_s)
        finally:
            bar.close()
        return jobs

    async def _consume(self, job: Job, batch: Any, misses: dict[str, ChatRequest]) -> None:
        """Answers into the cache (one transaction), then the job is marked done in the ledger."""
        keys = self.store.keys(job.tag)
        if batch.status == "failed" and not batch.output_file_id:
            self._rejected(job, batch, keys)
        answers, failed = {}, {}
        if batch.output_file_id:
            answers, failed = self._parse(await self._content(batch.output_file_id))
        if batch.error_file_id:
            failed.update(self._parse(await self._content(batch.error_file_id))[1])
        self._store_answers(job, answers, misses)
        missing = {k: f"batch {batch.status} before answering" for k in keys if k not in answers and k not in failed}
        for key, error in {**failed, **missing}.items():  # resubmitted alone by a later pass, within max_attempts
            self.failures[key] += 1
            if self.failures[key] >= self.cfg.max_attempts:
                self.given_up[key] = error
        self.store.finish(job.tag, batch.status, set(answers), {**failed, **missing})

    async def _content(self, file_id: str) -> bytes:
        response = await self.api.files.content(file_id)
        return response.content

    def _store_answers(self, job: Job, answers: dict[str, Completion], misses: dict[str, ChatRequest]) -> None:
        provider = self.client.provider
        rows, logs = [], []
        for key, completion in answers.items():
            request = misses.get(key) or ChatRequest(messages=())  # adopted from a run whose misses differ
            rows.append((key, provider.name, provider.model, request, completion))
            logs.append(CallLog(self.client.stage, provider.name, provider.model, key, False,
                                completion.prompt_tokens, completion.completion_tokens, 0.0, 1))
            self.paid.update(requests=1, prompt_tokens=completion.prompt_tokens,
                             completion_tokens=completion.completion_tokens)
        self.client.cache.put_many(rows, logs)
        if self.client.budget is not None:
            self.client.budget.settle(job.reserved_usd, list(answers.values()), batch=True)

    def _parse(self, content: bytes) -> tuple[dict[str, Completion], dict[str, str]]:
        """(answers by key, errors by key) of an output or error file."""
        from evolcoder.llm.openai_provider import completion_from_json, text_completion_from_json

        answers: dict[str, Completion] = {}
        failed: dict[str, str] = {}
        chat = not hasattr(self.client.provider, "api_model")
        for raw in content.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            key, response, error = line.get("custom_id"), line.get("response") or {}, line.get("error")
            if error or response.get("status_code") != 200:
                failed[key] = json.dumps(error or response.get("body"))[:500]
                continue
            try:
                body = response.get("body")
                answers[key] = completion_from_json(body) if chat else text_completion_from_json(body)
            except TransientError as exc:
                failed[key] = str(exc)
        return answers, failed

    def _rejected(self, job: Job, batch: Any, keys: list[str]) -> None:
        """A batch that failed validation: the provider's errors, with line numbers, as a params error."""
        errors = [e.model_dump() if hasattr(e, "model_dump") else dict(e) for e in (batch.errors.data or [])] \
            if batch.errors else []
        self.store.finish(job.tag, "failed", set(), {}, errors)
        listed = "; ".join(f"line {e.get('line')} (request {keys[e['line'] - 1][:12] if e.get('line') else '?'}): "
                           f"{e.get('code')}: {e.get('message')}" for e in errors[:10])
        raise ConfigError(f"params: llm.mode: batch {batch.id} ({job.tag}) failed validation at "
                          f"{self.client.endpoint}: {listed or 'no errors given'}"
                          + (f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""))

    def close(self) -> None:
        self.store.close()


async def run_passes(client: LLMClient, cfg: LLMConfig, work: Callable[[], Awaitable[T]],
                     progress: bool = True) -> T:
    """`work()` online, or in batch mode repeated until a pass finds every request cached."""
    if cfg.mode != "batch":
        return await work()
    batcher = Batcher(client, cfg, progress)
    try:
        await batcher.reconcile()  # before any paid call: a missing Batch API fails here
        while True:
            _start_pass(client, batcher)
            client.deferring = Deferrals(given_up=dict(batcher.given_up))
            result = await work()
            misses = client.deferring.misses
            client.deferring = None
            if not misses:
                return result
            await batcher.settle(misses)
    except (openai.APIConnectionError, openai.APIStatusError) as exc:
        raise EndpointDown(f"batch mode: {client.endpoint} failed: {type(exc).__name__}: {exc}. Nothing was "
                           "written; every submission is recorded in the cache database, so a re-run adopts the "
                           "batches already made and pays nothing twice") from exc
    finally:
        client.deferring = None
        batcher.close()


def _start_pass(client: LLMClient, batcher: Batcher) -> None:
    """Each pass counts afresh from what this run bought by batch, so the last pass's figures
    (the ones the stage reports) describe the whole run: batch answers count as paid requests,
    not as the cache hits the last pass sees them as."""
    usage = client._usage
    for name in ("failures", "retries"):
        usage[name] = 0
    usage["requests"] = batcher.paid["requests"]
    usage["cache_hits"] = -batcher.paid["requests"]
    usage["prompt_tokens"] = batcher.paid["prompt_tokens"]
    usage["completion_tokens"] = batcher.paid["completion_tokens"]
    usage["batches"] = batcher.batches
