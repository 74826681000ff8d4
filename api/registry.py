"""The Confluent Schema Registry REST subset, served under ``/registry``.

Paths, bodies and error codes follow Confluent's API so that its clients
(``confluent_kafka.schema_registry.SchemaRegistryClient``, Kafka tooling) work unchanged when
pointed at ``http://riverbed/registry``. Errors carry Confluent's ``error_code``/``message``
*and* the problem+json members used everywhere else in Riverbed.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.bodies import json_body
from api.services import Services
from schemas.registry import SchemaRegistry
from schemas.registry_errors import (
    InvalidSchema,
    ProtectedSubject,
    SubjectNotFound,
    VersionNotFound,
)
from schemas.stream_catalog import PIPELINE_SUBJECT

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


def _reply(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def _registry(request: Request) -> SchemaRegistry:
    services: Services = request.app.state.services
    return services.registry


async def _schema_from_body(request: Request) -> Any:
    body = await json_body(request, 'send {"schema": "<Avro schema as a string>"}')
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise InvalidSchema('the body must be {"schema": "<Avro schema as a JSON string>"}')
    schema_type = body.get("schemaType", "AVRO")
    if schema_type != "AVRO":
        raise InvalidSchema(f"schemaType {schema_type!r} is not supported; Riverbed speaks AVRO")
    if body.get("references"):
        raise InvalidSchema("schema references are not supported")
    try:
        return json.loads(body["schema"])
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"schema is not JSON: {exc.msg} at line {exc.lineno}") from None


async def _run(function: Any, *args: Any) -> Any:
    """Registry calls do Redis round trips and may take a lock: keep them off the loop."""
    return await anyio.to_thread.run_sync(function, *args)


async def list_subjects(request: Request) -> JSONResponse:
    deleted = request.query_params.get("deleted", "false") == "true"
    return _reply(await _run(_registry(request).subjects, deleted))


async def list_versions(request: Request) -> JSONResponse:
    registry = _registry(request)
    subject = request.path_params["subject"]
    versions = await _run(registry.versions, subject)
    if not versions:
        raise SubjectNotFound(f"subject {subject!r} not found")
    return _reply(versions)


async def register(request: Request) -> JSONResponse:
    schema = await _schema_from_body(request)
    found = await _run(_registry(request).register_version, request.path_params["subject"], schema)
    return _reply({"id": found.id, "version": found.version, "subject": found.subject})


async def get_version(request: Request) -> JSONResponse:
    found = await _run(
        _registry(request).version, request.path_params["subject"], request.path_params["version"]
    )
    return _reply(found.to_dict())


async def get_version_schema(request: Request) -> JSONResponse:
    found = await _run(
        _registry(request).version, request.path_params["subject"], request.path_params["version"]
    )
    return _reply(found.schema)


async def lookup(request: Request) -> JSONResponse:
    schema = await _schema_from_body(request)
    found = await _run(_registry(request).lookup, request.path_params["subject"], schema)
    return _reply(found.to_dict())


def _deletable(subject: str) -> None:
    if PIPELINE_SUBJECT.match(subject):
        raise ProtectedSubject(
            f"subject {subject!r} belongs to a Riverbed stream: its records are written with "
            "these versions; evolve the stream with PUT /v1/streams/{stream}/schema instead"
        )


async def delete_version(request: Request) -> JSONResponse:
    _deletable(request.path_params["subject"])
    if request.query_params.get("permanent") == "true":
        raise InvalidSchema("permanent deletes are not supported: ids must keep resolving")
    number = await _run(
        _registry(request).delete_version,
        request.path_params["subject"],
        request.path_params["version"],
    )
    return _reply(number)


async def delete_subject(request: Request) -> JSONResponse:
    registry = _registry(request)
    subject = request.path_params["subject"]
    _deletable(subject)
    versions = await _run(registry.versions, subject)
    if not versions:
        raise SubjectNotFound(f"subject {subject!r} not found")
    for number in versions:
        await _run(registry.delete_version, subject, number)
    return _reply(versions)


async def get_schema(request: Request) -> JSONResponse:
    try:
        schema_id = int(request.path_params["id"])
    except ValueError:
        raise InvalidSchema("schema ids are integers") from None
    schema = await _run(_registry(request).schema, schema_id)
    return _reply({"schema": json.dumps(schema)})


async def check_compatibility(request: Request) -> JSONResponse:
    schema = await _schema_from_body(request)
    registry = _registry(request)
    subject, version = request.path_params["subject"], request.path_params["version"]
    if version not in ("latest", "-1"):
        await _run(registry.version, subject, version)  # 404 for a version that does not exist
    problems = await _run(registry.check_against, subject, schema, version)
    body: dict[str, Any] = {"is_compatible": not problems}
    if request.query_params.get("verbose") == "true" or problems:
        body["messages"] = [f"{p.rule} at {p.path}: {p.message}" for p in problems]
    return _reply(body)


async def get_config(request: Request) -> JSONResponse:
    subject = request.path_params.get("subject")
    registry = _registry(request)
    if subject is None:
        return _reply({"compatibilityLevel": await _run(registry.compatibility, None)})
    level = await _run(registry.subject_compatibility, subject)
    if level is None:
        if request.query_params.get("defaultToGlobal") != "true":
            raise SubjectConfigNotFound(
                f"subject {subject!r} has no compatibility level of its own"
            )
        level = await _run(registry.compatibility, None)
    return _reply({"compatibilityLevel": level})


async def put_config(request: Request) -> JSONResponse:
    body = await json_body(request, 'send {"compatibility": "BACKWARD|FORWARD|FULL|..."}')
    if not isinstance(body, dict) or not isinstance(body.get("compatibility"), str):
        raise InvalidSchema('the body must be {"compatibility": "BACKWARD|FORWARD|FULL|..."}')
    level = await _run(
        _registry(request).set_compatibility,
        body["compatibility"].upper(),
        request.path_params.get("subject"),
    )
    return _reply({"compatibility": level})


class SubjectConfigNotFound(VersionNotFound):
    code = 40408
