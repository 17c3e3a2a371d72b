"""A fake OpenAI-compatible LLM for demos and tests: it echoes what reached it.

* ``POST /v1/chat/completions`` answers a chat completion whose assistant message is the last
  user message, verbatim; with ``"stream": true`` it streams the same text as server-sent events
  (``chat.completion.chunk`` objects, then ``data: [DONE]``).
* Tests can script the reply: ``x-demo-reply`` replaces the echoed text, and
  ``x-demo-chunk-chars: N`` streams it in pieces of N characters instead of word by word (so a
  token can be split across events). ``x-demo-gzip: 1`` gzips the completion, streamed or not,
  even when the request asked for no encoding (an upstream that ignores ``accept-encoding``;
  a stream is flushed after each event).
* Any other request is echoed: the response body is the request body byte for byte.
* ``GET /_upstream/stats`` reports how many requests reached the app (for tests and the demo).

Every response carries ``x-upstream-body-bytes`` (bytes received), ``x-upstream-accept-encoding``
and, when the request had one, ``x-upstream-content-length``, so a caller sees exactly what the
app got after Godel.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
import zlib
from typing import Any

from aiohttp import web

__all__ = ["build_app", "run"]

MODEL = "godel-echo-1"


RECEIVED = web.AppKey("received", dict)


def _trace_headers(request: web.Request, body: bytes) -> dict[str, str]:
    request.app[RECEIVED]["requests"] += 1
    headers = {"x-upstream-body-bytes": str(len(body))}
    if "content-length" in request.headers:
        headers["x-upstream-content-length"] = request.headers["content-length"]
    headers["x-upstream-accept-encoding"] = request.headers.get("accept-encoding", "-")
    return headers


def _last_user_text(payload: Any) -> str:
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    trace = _trace_headers(request, body)
    try:
        payload = json.loads(body)
    except ValueError:
        return web.json_response(
            {"error": {"message": "request body is not valid JSON", "type": "invalid_request"}},
            status=400,
            headers=trace,
        )
    text = request.headers.get("x-demo-reply") or _last_user_text(payload)
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if isinstance(payload, dict) and payload.get("stream") is True:
        squeeze = request.headers.get("x-demo-gzip") == "1"
        packer = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
        head = {"content-type": "text/event-stream", "cache-control": "no-cache", **trace}
        if squeeze:
            head["content-encoding"] = "gzip"
        resp = web.StreamResponse(headers=head)
        await resp.prepare(request)

        async def send(data: bytes, last: bool = False) -> None:
            if squeeze:
                data = packer.compress(data) + packer.flush(
                    zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
                )
            await resp.write(data)

        size = request.headers.get("x-demo-chunk-chars", "")
        if size.isdigit() and int(size) > 0:
            pieces = [text[i : i + int(size)] for i in range(0, len(text), int(size))]
        else:
            words = text.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        for piece in pieces:
            chunk = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": MODEL,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await send(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await send(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode(), last=True)
        await resp.write_eof()
        return resp
    completion = web.json_response(
        {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        },
        headers=trace,
    )
    if request.headers.get("x-demo-gzip") == "1" and isinstance(completion.body, bytes):
        completion.body = gzip.compress(completion.body)
        completion.headers["content-encoding"] = "gzip"
    return completion


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    ctype = request.headers.get("content-type", "application/octet-stream")
    return web.Response(body=body, headers={"content-type": ctype, **_trace_headers(request, body)})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[RECEIVED])


def build_app() -> web.Application:
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[RECEIVED] = {"requests": 0}
    app.router.add_get("/_upstream/stats", stats)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def run(address: str) -> None:
    host, _, port = address.rpartition(":")
    web.run_app(build_app(), host=host, port=int(port), access_log=None, print=None)
