"""The ``s3`` backend: S3 or any S3-compatible object store (MinIO, Ceph, R2, ...).

Through boto3, the AWS SDK, with each call run in a worker thread. Why not aiobotocore:
it pins botocore to a narrow range of releases, so it cannot sit beside a current boto3
(which most deployments and moto already bring); boto3's client is thread-safe, and a
media call is a handful of short requests (the bytes go in 8 MiB parts), so a thread per
call costs nothing that matters next to the transfer.

Objects appear whole: a small file is one ``PutObject``; a stream larger than a part is
a multipart upload, completed only when all of it arrived (aborted on any error, and
uploads abandoned by a crashed process are aborted by ``sweep_partial``). Keys are
``prefix + <id>.<ext>``, the key checked before any call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from proxy.errors import MediaUnavailable, PayloadTooLarge
from proxy.media.backends import KEY, StoredObject, check_key, register
from proxy.media.config import S3StoreConfig

PART = 8 * 1024 * 1024
"""Multipart part size (S3's minimum for all but the last part is 5 MiB)."""
READ_CHUNK = 256 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}


@register
class S3Backend:
    name: ClassVar[str] = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_config(cls, config: S3StoreConfig, *, data_dir: str, base_dir: str) -> S3Backend:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
        return cls(client, config.bucket, config.prefix)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.client, method), **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if method == "get_object" and code in _MISSING:
                raise
            raise MediaUnavailable(f"The media object store refused {method} ({code}).") from exc
        except Exception as exc:  # endpoint unreachable, timeouts
            name = type(exc).__name__
            raise MediaUnavailable(f"The media object store is not answering ({name}).") from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._call(
            "put_object",
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
        )

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int | None
    ) -> int:
        name = self._key(key)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(f"The output is larger than {max_bytes} bytes.")
                buffer += chunk
                while len(buffer) >= PART:
                    if upload_id is None:
                        created = await self._call(
                            "create_multipart_upload",
                            Bucket=self.bucket,
                            Key=name,
                            ContentType=content_type,
                        )
                        upload_id = str(created["UploadId"])
                    parts.append(await self._part(name, upload_id, len(parts) + 1, buffer[:PART]))
                    del buffer[:PART]
            if upload_id is None:
                await self.put(key, bytes(buffer), content_type)
                return size
            if buffer:
                parts.append(await self._part(name, upload_id, len(parts) + 1, buffer))
            await self._call(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await self._call(
                        "abort_multipart_upload", Bucket=self.bucket, Key=name, UploadId=upload_id
                    )
            raise
        return size

    async def _part(self, name: str, upload_id: str, number: int, data: bytes | bytearray) -> Any:
        answer = await self._call(
            "upload_part",
            Bucket=self.bucket,
            Key=name,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(data),
        )
        return {"ETag": answer["ETag"], "PartNumber": number}

    async def open(self, key: str) -> StoredObject | None:
        try:
            answer = await self._call("get_object", Bucket=self.bucket, Key=self._key(key))
        except ClientError:  # only a missing object gets through _call as one
            return None
        return StoredObject(int(answer["ContentLength"]), _read(answer["Body"]))

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Bucket=self.bucket, Key=self._key(key))

    async def sweep_partial(self, older_than: float) -> int:
        answer = await self._call("list_multipart_uploads", Bucket=self.bucket, Prefix=self.prefix)
        aborted = 0
        for upload in answer.get("Uploads", []):
            name = str(upload["Key"])
            ours = name.startswith(self.prefix) and KEY.fullmatch(name[len(self.prefix) :])
            if ours and upload["Initiated"].timestamp() < older_than:
                await self._call(
                    "abort_multipart_upload",
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload["UploadId"],
                )
                aborted += 1
        return aborted

    async def aclose(self) -> None:
        await asyncio.to_thread(self.client.close)


async def _read(body: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
            yield chunk
    finally:
        body.close()
