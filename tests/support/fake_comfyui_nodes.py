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
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageOps
from PIL.PngImagePlugin import PngInfo

#: Output node types (ComfyUI's ``OUTPUT_NODE = True``).
OUTPUT_NODES = frozenset(
    {"SaveImage", "SaveVideo", "PreviewImage", "SaveAnimatedPNG", "SaveAnimatedWEBP"}
)
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


def validate_prompt(
    prompt: Any, uploads: dict[str, bytes], models: dict[str, list[str]] | None = None
) -> dict[str, Any] | None:
    """ComfyUI's ``validate_prompt``: the 400 body, or None when the prompt is valid.
    ``models``: loader input -> the files installed (default ``MODEL_LISTS``)."""
    models = MODEL_LISTS if models is None else models
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
        errors: list[tuple[str, str, dict[str, Any]]] = []
        for name, value in node["inputs"].items():
            extra = {"input_name": name}
            if is_link(value) and str(value[0]) not in prompt:
                errors.append(("missing_node", f"{name}: node {value[0]} is missing", extra))
            if name in models and value not in models[name]:
                details = f"{name}: '{value}' not in {models[name]}"
                config = [models[name]]
                extra |= {"input_config": config, "received_value": value}
                errors.append(("value_not_in_list", details, extra))
        if node["class_type"] in IMAGE_LOADERS and node["inputs"]["image"] not in uploads:
            details = f"image - Invalid image file: {node['inputs']['image']}"
            errors.append(("custom_validation_failed", details, {"input_name": "image"}))
        if errors:
            node_errors[node_id] = {
                "errors": [
                    {
                        "type": t,
                        "message": t.replace("_", " ").capitalize(),
                        "details": d,
                        "extra_info": extra,
                    }
                    for t, d, extra in errors
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
        #: The hidden inputs of save nodes: the prompt running, and the client's
        #: ``extra_data.extra_pnginfo`` (the UI sends its ``workflow`` there).
        self.prompt: dict[str, Any] = {}
        self.extra_pnginfo: dict[str, Any] | None = None

    def metadata(self) -> list[tuple[str, str]]:
        """What ComfyUI embeds in saved files: ``prompt``, then each extra_pnginfo key."""
        entries = [("prompt", json.dumps(self.prompt))]
        return entries + [(k, json.dumps(v)) for k, v in (self.extra_pnginfo or {}).items()]

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


def _png(image: Image.Image, info: PngInfo | None = None) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def save_image(ctx: Context, images: list[Image.Image], filename_prefix: str, **_: Any) -> Saved:
    """SaveImage: one PNG per image, the prompt in tEXt chunks (``PngInfo.add_text``)."""
    info = PngInfo()
    for key, text in ctx.metadata():
        info.add_text(key, text)
    files, entries = [], []
    for image in images:
        folder, name = ctx.next_name(filename_prefix, "png")
        files.append((folder, name, _png(image, info)))
        entries.append({"filename": name, "subfolder": folder, "type": "output"})
    return Saved(files, {"images": entries})


def save_animated_png(
    ctx: Context, images: list[Image.Image], filename_prefix: str, fps: float, **_: Any
) -> Saved:
    """SaveAnimatedPNG: one APNG, the prompt in private ``comf`` chunks after the image
    data, and ``animated: [True]`` in its output."""
    info = PngInfo()
    for key, text in ctx.metadata():
        info.add(b"comf", key.encode("latin-1") + b"\0" + text.encode("latin-1"), after_idat=True)
    folder, name = ctx.next_name(filename_prefix, "png")
    out = io.BytesIO()
    images[0].save(
        out,
        format="PNG",
        pnginfo=info,
        save_all=True,
        duration=int(1000.0 / fps),
        append_images=images[1:],
    )
    entry = {"filename": name, "subfolder": folder, "type": "output"}
    return Saved([(folder, name, out.getvalue())], {"images": [entry], "animated": [True]})


def save_animated_webp(
    ctx: Context, images: list[Image.Image], filename_prefix: str, fps: float, **_: Any
) -> Saved:
    """SaveAnimatedWEBP: the prompt in EXIF (0x0110 ``prompt:...``, extra_pnginfo from
    0x010F down), ``animated`` when there is more than one frame."""
    exif = images[0].getexif()
    tag = 0x010F
    for key, text in ctx.metadata():
        if key == "prompt":
            exif[0x0110] = f"prompt:{text}"
        else:
            exif[tag], tag = f"{key}:{text}", tag - 1
    folder, name = ctx.next_name(filename_prefix, "webp")
    out = io.BytesIO()
    images[0].save(
        out,
        format="WEBP",
        save_all=True,
        duration=int(1000.0 / fps),
        append_images=images[1:],
        exif=exif,
        lossless=True,
    )
    entry = {"filename": name, "subfolder": folder, "type": "output"}
    return Saved(
        [(folder, name, out.getvalue())], {"images": [entry], "animated": [len(images) != 1]}
    )


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
    "SaveAnimatedPNG": save_animated_png,
    "SaveAnimatedWEBP": save_animated_webp,
}
