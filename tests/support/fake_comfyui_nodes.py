"""The node types of the shipped ComfyUI templates, simulated with Pillow.

Enough of each node's meaning survives to make tests meaningful: sizes and batch
sizes are honoured, ``LoadImageMask`` on the alpha channel marks transparent pixels
for repainting (as ComfyUI does: mask = 1 - alpha), a sampler repaints only inside
an inpainting mask and keeps the source under partial denoise, and the save nodes
write real PNG and MP4 files. "Sampling" paints a colour derived from the seed and
the prompt, so different seeds give different images.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageOps

#: Output node types (ComfyUI's ``OUTPUT_NODE = True``).
OUTPUT_NODES = frozenset({"SaveImage", "SaveVideo", "PreviewImage"})
#: Node types whose ``image`` input must name an uploaded file.
IMAGE_LOADERS = frozenset({"LoadImage", "LoadImageMask"})
#: Loader input -> the model files this fake "has installed".
MODEL_LISTS = {
    "ckpt_name": [
        "v1-5-pruned-emaonly-fp16.safetensors",
        "512-inpainting-ema.safetensors",
        "svd_xt.safetensors",
    ],
    "unet_name": ["wan2.1_t2v_1.3B_fp16.safetensors"],
    "clip_name": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae_name": ["wan_2.1_vae.safetensors"],
}


@dataclass
class Latent:
    frames: list[Image.Image]
    mask: Image.Image | None = None


@dataclass
class Saved:
    """Files an output node wrote: (subfolder, filename, bytes), and its UI output."""

    files: list[tuple[str, str, bytes]]
    ui: dict[str, Any]


class Context:
    """What node functions may read: uploaded inputs and a file-name counter."""

    def __init__(self, uploads: dict[str, bytes]) -> None:
        self.uploads = uploads
        self.counter = 0

    def next_name(self, prefix: str, extension: str) -> tuple[str, str]:
        self.counter += 1
        folder, _, stem = prefix.rpartition("/")
        return folder, f"{stem}_{self.counter:05}_.{extension}"


def _color(seed: int, text: str, index: int) -> tuple[int, int, int]:
    digest = hashlib.sha256(f"{seed}:{text}:{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def _painted(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=tuple(255 - c for c in color))
    return image


def _load(ctx: Context, name: str) -> Image.Image:
    return Image.open(io.BytesIO(ctx.uploads[name]))


def load_image(ctx: Context, image: str, **_: Any) -> tuple[Any, ...]:
    source = _load(ctx, image)
    rgba = source.convert("RGBA")
    return rgba.convert("RGB"), ImageOps.invert(rgba.getchannel("A"))


def load_image_mask(ctx: Context, image: str, channel: str, **_: Any) -> tuple[Any, ...]:
    rgba = _load(ctx, image).convert("RGBA")
    band = rgba.getchannel(channel[0].upper())
    return (ImageOps.invert(band) if channel == "alpha" else band,)


def k_sampler(
    ctx: Context, seed: int, positive: Any, latent_image: Latent, denoise: float = 1.0, **_: Any
) -> tuple[Any, ...]:
    text = positive.get("text", "") if isinstance(positive, dict) else ""
    frames = []
    for index, frame in enumerate(latent_image.frames):
        painted = _painted(frame.size, _color(seed, text, index))
        if latent_image.mask is not None:
            mask = latent_image.mask.resize(frame.size)
            painted = Image.composite(painted, frame.convert("RGB"), mask)
        elif denoise < 1.0:
            painted = Image.blend(frame.convert("RGB"), painted, denoise)
        frames.append(painted)
    return (Latent(frames),)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def save_image(ctx: Context, images: list[Image.Image], filename_prefix: str, **_: Any) -> Saved:
    files, entries = [], []
    for image in images:
        folder, name = ctx.next_name(filename_prefix, "png")
        files.append((folder, name, _png(image)))
        entries.append({"filename": name, "subfolder": folder, "type": "output"})
    return Saved(files, {"images": entries})


def encode_mp4(frames: list[Image.Image], fps: float) -> bytes:
    """A real H.264 MP4 via ffmpeg; without ffmpeg, a bare ``ftyp`` box (not playable)."""
    if shutil.which("ffmpeg") is None:
        return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.mp4"
        frames_in = b"".join(_png(f.resize((f.width // 2 * 2, f.height // 2 * 2))) for f in frames)
        command = ["ffmpeg", "-v", "error", "-y", "-f", "image2pipe", "-framerate", f"{fps:g}"]
        command += ["-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(target)]
        subprocess.run(
            command,
            input=frames_in,
            check=True,
            timeout=60,
        )
        return target.read_bytes()


def save_video(ctx: Context, video: dict[str, Any], filename_prefix: str, **_: Any) -> Saved:
    folder, name = ctx.next_name(filename_prefix, "mp4")
    data = encode_mp4(video["frames"], video["fps"])
    entry = {"filename": name, "subfolder": folder, "type": "output"}
    return Saved([(folder, name, data)], {"images": [entry], "animated": [True]})


def _gray(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), (128, 128, 128))


NodeFunction = Callable[..., Any]

NODES: dict[str, NodeFunction] = {
    "CheckpointLoaderSimple": lambda ctx, **_: ("model", "clip", "vae"),
    "ImageOnlyCheckpointLoader": lambda ctx, **_: ("model", "clip_vision", "vae"),
    "UNETLoader": lambda ctx, **_: ("model",),
    "CLIPLoader": lambda ctx, **_: ("clip",),
    "VAELoader": lambda ctx, **_: ("vae",),
    "ModelSamplingSD3": lambda ctx, model, **_: (model,),
    "VideoLinearCFGGuidance": lambda ctx, model, **_: (model,),
    "CLIPTextEncode": lambda ctx, text, **_: ({"text": text},),
    "EmptyLatentImage": lambda ctx, width, height, batch_size, **_: (
        Latent([_gray(width, height) for _ in range(batch_size)]),
    ),
    "EmptyHunyuanLatentVideo": lambda ctx, width, height, length, **_: (
        Latent([_gray(width, height) for _ in range(length)]),
    ),
    "LoadImage": load_image,
    "LoadImageMask": load_image_mask,
    "ImageScale": lambda ctx, image, width, height, **_: (ImageOps.fit(image, (width, height)),),
    "VAEEncode": lambda ctx, pixels, **_: (
        Latent(pixels if isinstance(pixels, list) else [pixels]),
    ),
    "VAEEncodeForInpaint": lambda ctx, pixels, mask, **_: (Latent([pixels], mask),),
    "RepeatLatentBatch": lambda ctx, samples, amount, **_: (
        Latent(samples.frames * amount, samples.mask),
    ),
    "SVD_img2vid_Conditioning": lambda ctx, init_image, width, height, video_frames, **_: (
        {"text": ""},
        {"text": ""},
        Latent([ImageOps.fit(init_image, (width, height))] * video_frames),
    ),
    "KSampler": k_sampler,
    "VAEDecode": lambda ctx, samples, **_: (samples.frames,),
    "CreateVideo": lambda ctx, images, fps, **_: ({"frames": images, "fps": float(fps)},),
    "SaveImage": save_image,
    "PreviewImage": save_image,
    "SaveVideo": save_video,
}
