"""A wasi:http/proxy component written in Python (componentize-py): the
droplet host's conformance suite serves it without a manifest."""

import sys

from wit_world import exports
from wit_world.imports import outgoing_handler
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
)
from componentize_py_types import Ok, Err

# Kept past the handler's return, as a toolchain that never drops it would.
UNFINISHED = []


def respond(out, status, body, headers=()):
    response = OutgoingResponse(Fields.from_list(list(headers)))
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(out, Ok(response))
    stream = outgoing.write()
    stream.blocking_write_and_flush(body)
    stream.__exit__(None, None, None)
    OutgoingBody.finish(outgoing, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        if path == "/":
            respond(out, 200, b"Hello from Python\n", [("content-type", b"text/plain")])
        elif path == "/outbound":
            # No allowlist: the host refuses the request when it is made.
            outgoing = OutgoingRequest(Fields())
            outgoing.set_scheme(Scheme_Http())
            outgoing.set_authority("example.com")
            outgoing.set_path_with_query("/")
            try:
                future = outgoing_handler.handle(outgoing, None)
                future.subscribe().block()
                answer = future.get()
                if isinstance(answer, Ok) and isinstance(answer.value, Err):
                    respond(out, 403, repr(answer.value.value).encode())
                else:
                    respond(out, 200, repr(answer).encode())
            except Err as refused:
                respond(out, 403, repr(refused.value).encode())
        elif path == "/print":
            for piece in ["start a print ", "1", "2", "3", "4", "\n"]:
                sys.stderr.write(piece)
                sys.stderr.flush()
            respond(out, 200, b"printed\n")
        elif path == "/unfinished":
            # The head and some of the body, then return without finishing.
            response = OutgoingResponse(Fields())
            response.set_status_code(200)
            outgoing = response.body()
            ResponseOutparam.set(out, Ok(response))
            stream = outgoing.write()
            stream.blocking_write_and_flush(b"partial")
            UNFINISHED.append((outgoing, stream))
        elif path == "/no-response":
            return
        else:
            respond(out, 404, b"not found\n")
