"""The node types of the shipped ComfyUI templates, simulated with Pillow, and
ComfyUI's prompt validation (``validate_prompt``) over them.

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


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def validate_prompt(prompt: Any, uploads: dict[str, bytes]) -> dict[str, Any] | None:
    """ComfyUI's ``validate_prompt``: the 400 body, or None when the prompt is valid."""
    if not isinstance(prompt, dict):
        return {"error": {"type": "invalid_prompt", "message": "Prompt is not a dict"}}
    for node_id, node in prompt.items():
        if node.get("class_type") not in NODES:
            error = {
                "type": "invalid_prompt",
                "message": f"Cannot execute because node {node.get('class_type')} does not exist.",
                "details": f"Node ID '#{node_id}'",
                "extra_info": {},
            }
            return {"error": error, "node_errors": {}}
    outputs = [n for n, node in prompt.items() if node["class_type"] in OUTPUT_NODES]
    if not outputs:
        error = {"type": "prompt_no_outputs", "message": "Prompt has no outputs"}
        return {"error": {**error, "details": "", "extra_info": {}}, "node_errors": []}
    node_errors: dict[str, Any] = {}
    for node_id, node in prompt.items():
        errors = []
        for name, value in node["inputs"].items():
            if is_link(value) and str(value[0]) not in prompt:
                errors.append(("missing_node", f"{name}: node {value[0]} is missing"))
            if name in MODEL_LISTS and value not in MODEL_LISTS[name]:
                details = f"{name}: '{value}' not in {MODEL_LISTS[name]}"
                errors.append(("value_not_in_list", details))
        if node["class_type"] in IMAGE_LOADERS and node["inputs"]["image"] not in uploads:
            details = f"image - Invalid image file: {node['inputs']['image']}"
            errors.append(("custom_validation_failed", details))
        if errors:
            node_errors[node_id] = {
                "errors": [
                    {"type": t, "message": t.replace("_", " ").capitalize(), "details": d}
                    for t, d in errors
                ],
                "dependent_outputs": outputs,
                "class_type": node["class_type"],
            }
    if node_errors:
        error = {"type": "prompt_outputs_failed_validation"}
        error |= {"message": "Prompt outputs failed validation", "details": ""}
        return {"error": error, "node_errors": node_errors}
    return None


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
    """A real MP4 via ffmpeg (H.264, or MPEG-4 part 2 where libx264 is missing);
    without ffmpeg, a bare ``ftyp`` box that is not playable."""
    if shutil.which("ffmpeg") is None:
        return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    frames_in = b"".join(_png(f.resize((f.width // 2 * 2, f.height // 2 * 2))) for f in frames)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.mp4"
        for codec in ("libx264", "mpeg4"):
            command = ["ffmpeg", "-v", "error", "-y", "-f", "image2pipe", "-framerate", f"{fps:g}"]
            command += ["-i", "-", "-c:v", codec, "-pix_fmt", "yuv420p", str(target)]
            done = subprocess.run(command, input=frames_in, capture_output=True, timeout=60)
            if done.returncode == 0:
                return target.read_bytes()
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')[-500:]}")


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
