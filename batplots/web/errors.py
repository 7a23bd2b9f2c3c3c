"""The API's errors as JSON: the store's and the engine's exceptions to 4xx/5xx {detail, ...}."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from batplots.model.engine.base import EngineError, SettingsError
from batplots.store import stories as storelib
from batplots.web.generation import Busy, StoryBusy
from batplots.web.modelside import ModelUnavailable


def error_body(exc: Exception) -> dict:
    """The JSON of an error: {message, status} (+ version for a conflict)."""
    status, payload = error_response(exc)
    return {"message": payload["detail"], "status": status, **{k: v for k, v in payload.items() if k != "detail"}}


def error_response(exc: Exception) -> tuple[int, dict]:
    if isinstance(exc, storelib.Conflict):
        return 409, {"detail": str(exc), "version": exc.version}
    if isinstance(exc, StoryBusy):
        return 409, {"detail": str(exc), "version": exc.version, "generating": True}
    if isinstance(exc, storelib.NotFound):
        return 404, {"detail": str(exc)}
    if isinstance(exc, storelib.Invalid):
        return 422, {"detail": str(exc)}
    if isinstance(exc, storelib.Unavailable):  # the PostgreSQL server is down or every connection busy
        return 503, {"detail": str(exc)}
    if isinstance(exc, SettingsError):
        return 422, {"detail": str(exc), "field": exc.field}
    if isinstance(exc, (ModelUnavailable, Busy)):
        return 503, {"detail": str(exc)}
    if isinstance(exc, EngineError):  # a remote model server down, slow or failing: nothing was saved
        return 502, {"detail": f"the model failed: {exc}"}
    raise exc


def install_error_handlers(app) -> None:
    """Map the store's and the engine's errors to 4xx/503 JSON {detail, ...}."""
    for exc_type in (storelib.StoreError, SettingsError, ModelUnavailable, Busy, StoryBusy, EngineError):
        async def handler(_request, exc):
            status, payload = error_response(exc)
            return JSONResponse(payload, status_code=status)
        app.add_exception_handler(exc_type, handler)
