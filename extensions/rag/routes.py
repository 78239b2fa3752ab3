"""The RAG management API under ``/v1/switchyard/rag``.

    GET    /collections                              list collections
    POST   /collections                              create {name, description?, metadata?}
    GET    /collections/{name}                       one collection (chunk count, model)
    DELETE /collections/{name}                       delete it and everything in it
    POST   /collections/{name}/documents             add JSON documents
                                                     [{text, metadata?, id?, source?}]
    POST   /collections/{name}/files                 upload files (multipart field ``file``,
                                                     optional ``metadata`` JSON and ``id``)
    POST   /collections/{name}/index                 index a server-side directory (202
                                                     with a job past a size threshold)
    GET    /collections/{name}/jobs/{id}             an index job (the caller's own)
    POST   /collections/{name}/documents/delete      delete by {ids?, sources?}
    DELETE /collections/{name}/documents/{id}        delete one document
    POST   /collections/{name}/search                {query, k?, where?}
    POST   /search                                   {collections, query, k?, where?}

Handlers are thin: decode (msgspec, 400 naming the field), call ``ingest``/``RagStore``
with the caller's owner id, encode. Every error is a typed ``SwitchyardError``; unknown
collections, and other owners' collections, are 404 naming the collection; changing a
shared collection is 403 (see ``owners.py``). Ingestion that the client waits for stops
when the client disconnects (``until_disconnected``): nobody would read its answer.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import UploadFile

from extensions.rag import ingest
from extensions.rag.records import check_collection_name
from extensions.rag.schemas import (
    CollectionCreate,
    CollectionList,
    Deleted,
    DocumentsAdd,
    DocumentsDelete,
    DocumentsDeleted,
    HitList,
    IndexRequest,
    Metadata,
    MultiSearchRequest,
    SearchRequest,
)
from extensions.rag.store import RagStore
from proxy.context import request_info
from proxy.disconnect import until_disconnected
from proxy.errors import InvalidRequest, NotFound, ServiceUnavailable
from proxy.gateway import json_response
from proxy.media.uploads import parse_form
from proxy.schemas.base import decode_request

S = TypeVar("S", bound=msgspec.Struct)
_MIB = 1024 * 1024


def _store(request: Request[Any, Any, Any]) -> RagStore:
    state = getattr(request.app.state, "switchyard", None)
    extension = state.extensions.get("rag") if state is not None else None
    store = getattr(extension, "store", None)
    if store is None:
        raise ServiceUnavailable("RAG is not enabled on this server.")
    return store  # type: ignore[no-any-return]


async def _body(request: Request[Any, Any, Any], kind: type[S]) -> S:
    return decode_request(await request.body(), kind).params  # type: ignore[type-var,no-any-return]


def _owner(request: Request[Any, Any, Any]) -> str:
    return request_info(request.scope).team_id


def _collection(name: str) -> str:
    check_collection_name(name, "collection")
    return name


@get("/collections", summary="List RAG collections")
async def list_collections(request: Request[Any, Any, Any]) -> Response[bytes]:
    collections = await _store(request).list_collections(_owner(request))
    return json_response(CollectionList(data=collections))


@post(
    "/collections",
    summary="Create a RAG collection",
    status_code=201,
    opt={"request_body": CollectionCreate},
)
async def create_collection(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await _body(request, CollectionCreate)
    info = await _store(request).create_collection(
        _owner(request), body.name, body.description, body.metadata
    )
    return json_response(info, status_code=201)


@get("/collections/{name:str}", summary="Retrieve a RAG collection")
async def get_collection(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    return json_response(await _store(request).collection_info(_owner(request), _collection(name)))


@delete("/collections/{name:str}", summary="Delete a RAG collection", status_code=200)
async def delete_collection(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    await _store(request).delete_collection(_owner(request), _collection(name))
    return json_response(Deleted(id=name, object="rag.collection"))


@post(
    "/collections/{name:str}/documents",
    summary="Add documents (JSON)",
    status_code=200,
    opt={"request_body": DocumentsAdd},
)
async def add_documents(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    body = await _body(request, DocumentsAdd)
    work = ingest.add_documents(_store(request), _owner(request), _collection(name), body.documents)
    return json_response(await until_disconnected(request.receive, work))


async def _form_files(request: Request[Any, Any, Any]) -> tuple[list[tuple[str, bytes]], Any]:
    content_type, _ = request.content_type
    if content_type != "multipart/form-data":
        raise InvalidRequest("Upload files as multipart/form-data in a 'file' field.", param="file")
    form = await parse_form(request)
    files: list[tuple[str, bytes]] = []
    try:
        for value in form.getall("file") if "file" in form else []:
            if not isinstance(value, UploadFile):
                raise InvalidRequest("The 'file' field must carry a file.", param="file")
            if not value.filename:
                raise InvalidRequest(
                    "A 'file' part has an empty filename; name the file (its extension "
                    "decides how it is read).",
                    param="file",
                )
            files.append((value.filename, await value.read()))
    finally:
        for value in form.values():
            if isinstance(value, UploadFile):
                await value.close()
    return files, form


class UploadForm(msgspec.Struct, kw_only=True):
    """The multipart upload's fields, for the OpenAPI document (the form is read as is)."""

    file: list[bytes]
    """One or more files (text, markdown, HTML, PDF, source code)."""
    metadata: str | None = None
    """A JSON object of metadata stored with every chunk."""
    id: str | None = None
    """The document id (one file only); default: derived from the file name."""


async def upload_files(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    files, form = await _form_files(request)
    metadata: Metadata = {}
    raw_metadata = form.get("metadata")
    if isinstance(raw_metadata, str) and raw_metadata.strip():
        try:
            metadata = msgspec.json.decode(raw_metadata, type=Metadata)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"Invalid metadata: {exc}", param="metadata") from None
        except msgspec.DecodeError:
            raise InvalidRequest("metadata must be a JSON object.", param="metadata") from None
    doc_id = form.get("id")
    doc_id = doc_id.strip() if isinstance(doc_id, str) and doc_id.strip() else None
    work = ingest.add_files(
        _store(request), _owner(request), _collection(name), files, metadata, doc_id
    )
    return json_response(await until_disconnected(request.receive, work))


@post(
    "/collections/{name:str}/index",
    summary="Index a server-side directory",
    status_code=200,
    opt={"request_body": IndexRequest},
)
async def index_directory(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    body = await _body(request, IndexRequest)
    store = _store(request)
    name = _collection(name)
    owner = _owner(request)
    plan = await until_disconnected(request.receive, ingest.plan_index(store, owner, name, body))
    if len(plan.files) > store.config.index_job_threshold_files:
        work = functools.partial(ingest.run_index, store, owner, name, plan)
        job = await store.jobs.start(owner, name, len(plan.files), work)
        return json_response(job, status_code=202)
    report = await until_disconnected(request.receive, ingest.run_index(store, owner, name, plan))
    return json_response(report)


@get("/collections/{name:str}/jobs/{job_id:str}", summary="Retrieve an index job")
async def get_index_job(request: Request[Any, Any, Any], name: str, job_id: str) -> Response[bytes]:
    store = _store(request)
    return json_response(await store.jobs.get(_owner(request), _collection(name), job_id))


@post(
    "/collections/{name:str}/documents/delete",
    summary="Delete documents",
    status_code=200,
    opt={"request_body": DocumentsDelete},
)
async def delete_documents(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    body = await _body(request, DocumentsDelete)
    if not body.ids and not body.sources:
        raise InvalidRequest("Give 'ids' and/or 'sources' to delete.", param="ids")
    store, owner = _store(request), _owner(request)
    await store.writable_collection(owner, _collection(name))
    documents, chunks = await store.delete_sources(owner, name, ids=body.ids, sources=body.sources)
    return json_response(DocumentsDeleted(collection=name, documents=documents, chunks=chunks))


@delete(
    "/collections/{name:str}/documents/{doc_id:path}", summary="Delete a document", status_code=200
)
async def delete_document(
    request: Request[Any, Any, Any], name: str, doc_id: str
) -> Response[bytes]:
    store, owner = _store(request), _owner(request)
    await store.writable_collection(owner, _collection(name))
    doc_id = doc_id.lstrip("/")
    documents, chunks = await store.delete_sources(owner, name, ids=[doc_id])
    if not documents:
        raise NotFound(f"Document '{doc_id}' is not in collection '{name}'.", param="id")
    return json_response(DocumentsDeleted(collection=name, documents=documents, chunks=chunks))


@post(
    "/collections/{name:str}/search",
    summary="Search one collection",
    status_code=200,
    opt={"request_body": SearchRequest},
)
async def search_collection(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    body = await _body(request, SearchRequest)
    store = _store(request)
    k = body.k if body.k is not None else store.config.top_k
    hits = await store.search(_owner(request), [_collection(name)], body.query, k, body.where)
    return json_response(HitList(data=hits))


@post(
    "/search",
    summary="Search several collections",
    status_code=200,
    opt={"request_body": MultiSearchRequest},
)
async def search(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = await _body(request, MultiSearchRequest)
    if not body.collections:
        raise InvalidRequest("Name at least one collection.", param="collections")
    store = _store(request)
    k = body.k if body.k is not None else store.config.top_k
    hits = await store.search(_owner(request), body.collections, body.query, k, body.where)
    return json_response(HitList(data=hits))


def rag_router(*, max_upload_mb: float = 10.0) -> Router:
    """The management API, under /v1 and its guards. Uploads may be ``max_upload_mb``
    (plus 1 MiB for the multipart framing) whatever the server-wide body limit is."""
    upload = post(
        "/collections/{name:str}/files",
        summary="Upload files (multipart)",
        status_code=200,
        request_max_body_size=int((max_upload_mb + 1) * _MIB),
        opt={"request_body": UploadForm, "request_media_type": "multipart/form-data"},
    )(upload_files)
    return Router(
        path="/switchyard/rag",
        route_handlers=[
            list_collections,
            create_collection,
            get_collection,
            delete_collection,
            add_documents,
            upload,
            index_directory,
            get_index_job,
            delete_documents,
            delete_document,
            search_collection,
            search,
        ],
        tags=["RAG"],
    )
