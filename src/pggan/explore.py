"""Looking at a trained generator: latent interpolation videos and strips, the training video, and the
nearest training images of generated ones (the paper's appendix F)."""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from PIL import Image, ImageDraw

from .api import LoadedGenerator, latents_for_seeds, parse_class_option
from .classes import CLASS_STREAM, blend_classes
from .util.device import MAX_MEMORY_FRACTION, available_memory
from .util.errors import UsageError
from .util.files import tagged_files
from .util.grids import make_grid, save_png
from .video import VideoWriter, blur_over_time, check_frames_fit, slerp, smooth_latent_path, video_output


def _resize(frame: np.ndarray, size: int | None) -> np.ndarray:
    if not size or frame.shape[0] == size:
        return frame
    h, w = frame.shape[:2]
    img = Image.fromarray(frame).resize((round(w * size / h), size), Image.LANCZOS if size < h else Image.NEAREST)
    return np.asarray(img)


def write_video(out: str, fps: float, kind: str, frames, progress=None) -> None:
    """Frames from an iterable into ``out``; on any error (or Ctrl-C) nothing is left behind."""
    writer = VideoWriter(out, fps, kind)
    try:
        for frame in frames:
            writer.add(frame)
            if progress:
                progress(1)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def interpolation_video(gen: LoadedGenerator, out: str, duration: float = 10.0, fps: float = 60.0,
                        sigma: float = 45.0, grid: tuple[int, int] = (1, 1), size: int | None = None,
                        seed: int = 0, class_idx: int | str | None = None, progress=None) -> dict:
    """The paper's latent walk: ``grid`` = (columns, rows) streams, ``size`` = height of one stream."""
    out, kind = video_output(out)
    frames = int(round(duration * fps))
    if frames < 2 or fps <= 0:
        raise UsageError("the video needs at least 2 frames: raise --duration or --fps")
    cols, rows = grid
    cell = size or gen.resolution
    check_frames_fit(kind, frames, cell * rows, cell * cols)
    if frames * cols * rows * gen.z_dim * 8 * 3 > MAX_MEMORY_FRACTION * available_memory():    # float64 path and its FFT
        raise UsageError(f"{frames} frames x {cols * rows} streams of {gen.z_dim}-d latents do not fit in memory; "
                         f"lower --duration, --fps or --grid")
    z = smooth_latent_path(frames, cols * rows, gen.z_dim, sigma, seed)
    labels = class_path(gen, frames, cols * rows, sigma, seed, class_idx)

    def grids():
        for t in range(frames):
            images = gen.generate(z=z[t], labels=None if labels is None else labels[t]).images
            yield make_grid(np.stack([_resize(im, cell) for im in images]), cols)

    write_video(out, fps, kind, grids(), progress)
    return {"path": out, "frames": frames, "latents": z, "labels": labels}


def class_path(gen: LoadedGenerator, frames: int, streams: int, sigma: float, seed: int,
               class_idx: int | str | None = None) -> np.ndarray | None:
    """Each stream's class vector over time, float32 [frames, streams, C] (None when unconditional). A class
    number, or classes in turn (stream i: class i mod C), hold for the whole stream; classes drawn from the
    prior (the default) change every 8 sigma frames, cross-faded by the latents' own blur, so that no
    frame jumps."""
    if gen.classes is None:
        return None
    C = gen.classes.size
    if parse_class_option(class_idx) not in (None, "prior"):
        fixed = gen.class_labels(class_idx, range(streams))
        return np.repeat(np.eye(C, dtype=np.float32)[fixed][None], frames, axis=0)
    hold = max(1, int(round(8 * sigma))) if sigma > 0 else frames
    keys = -(-frames // hold)
    rng = np.random.default_rng([seed, CLASS_STREAM])
    drawn = gen.classes.sample(rng, keys * streams).reshape(keys, streams)
    hard = np.eye(C)[np.repeat(drawn, hold, axis=0)[:frames]]                       # [frames, streams, C]
    return blur_over_time(hard, sigma).astype(np.float32)


def seed_of(item) -> int | None:
    """The seed ``item`` names (an int or digits), or None (a path to a saved latent)."""
    return int(item) if isinstance(item, int) or str(item).strip().isdigit() else None


def latent_of(item, z_dim: int) -> np.ndarray:
    """A seed (int or digits) or a saved latent (.npy, e.g. a projection's z.npy) -> [z_dim]."""
    if (seed := seed_of(item)) is not None:
        return latents_for_seeds([seed], z_dim).numpy()[0]
    try:
        z = np.load(str(item).strip(), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"'{item}' is neither a seed nor a readable .npy latent ({e})") from None
    if z.size != z_dim:
        raise UsageError(f"'{item}' holds {z.size} numbers; this generator's latent has {z_dim}")
    return z.reshape(z_dim).astype(np.float32)


def class_of(gen: LoadedGenerator, item, class_idx: int | str | None = None) -> int | None:
    """The class of one end of a strip: a seed's draw, or for a saved latent the class saved beside it
    (a projection's class.npy) unless --class names one."""
    if gen.classes is None:
        return None
    if (seed := seed_of(item)) is not None or isinstance(parse_class_option(class_idx), int):
        return int(gen.class_labels(class_idx, [seed])[0])
    saved = os.path.join(os.path.dirname(str(item).strip()), "class.npy")
    if not os.path.isfile(saved):
        raise UsageError(f"'{item}' has no class.npy beside it and this generator is conditional: "
                         f"pass --class 0..{gen.classes.size - 1}")
    k = int(np.load(saved, allow_pickle=False))
    if not 0 <= k < gen.classes.size:
        raise UsageError(f"'{saved}' holds class {k}; this generator has classes 0..{gen.classes.size - 1}")
    return k


def interpolation_strip(gen: LoadedGenerator, seed_a, seed_b, steps: int, out: str,
                        class_idx: int | str | None = None) -> np.ndarray:
    """Images along the great circle from seed_a's latent to seed_b's, in one row; each end is a seed or
    a .npy latent (a projected image's z.npy). A conditional generator's class vector moves linearly from
    one end's class to the other's along the same path, so the strip has no jump where the class changes."""
    if steps < 2:
        raise UsageError("--steps must be at least 2")
    za, zb = latent_of(seed_a, gen.z_dim), latent_of(seed_b, gen.z_dim)
    ts = np.linspace(0.0, 1.0, steps)
    z = np.stack([slerp(za, zb, t) for t in ts])
    labels = None
    if gen.classes is not None:
        labels = blend_classes(class_of(gen, seed_a, class_idx), class_of(gen, seed_b, class_idx),
                               gen.classes.size, ts)
    images = gen.generate(z=z, labels=labels).images
    strip = make_grid(images, steps)
    save_png(out, strip)
    return strip


# ---- the course of training --------------------------------------------------------------------

def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    h = max(14, frame.shape[0] // 24)
    band = Image.new("RGB", (frame.shape[1], h + 6), (0, 0, 0))
    ImageDraw.Draw(band).text((4, 3), text, fill=(255, 255, 255))
    return np.concatenate([np.asarray(band), frame if frame.shape[2] == 3 else frame.repeat(3, 2)], axis=0)


def training_frames(run_dir: str) -> list[tuple[float, str, int | None]]:
    """(kimg, grid file, resolution at that kimg) of a run's fakesKKKKKK.KKK.png grids, in order."""
    files = tagged_files(run_dir, "fakes", ".png")
    if not files:
        raise UsageError(f"'{run_dir}' has no image grids (fakesKKKKKK.KKK.png); give a run directory of `pggan train`")
    stats = []
    path = os.path.join(run_dir, "stats.jsonl")
    if os.path.isfile(path):
        stats = [json.loads(line) for line in open(path) if line.strip()]
    out = []
    for nimg, f in files:
        kimg = nimg / 1000.0
        # the closest tick tells the resolution
        res = min(stats, key=lambda s: abs(s["kimg"] - kimg))["resolution"] if stats else None
        out.append((kimg, f, res))
    return out


def training_video(run_dir: str, out: str, fps: float = 4.0, size: int | None = None, progress=None) -> dict:
    out, kind = video_output(out)
    frames = training_frames(run_dir)
    first = np.asarray(Image.open(frames[0][1]).convert("RGB"))
    h = size or first.shape[0]
    check_frames_fit(kind, len(frames), h + h // 24 + 6, round(first.shape[1] * h / first.shape[0]))
    write_video(out, fps, kind, (_caption(_resize(np.asarray(Image.open(f).convert("RGB")), h),
                                          f"kimg {kimg:.0f}" + (f"   {res}x{res}" if res else ""))
                                 for kimg, f, res in frames), progress)
    return {"path": out, "frames": len(frames)}


# ---- nearest neighbours ------------------------------------------------------------------------

def nearest_neighbors(queries: torch.Tensor, bank_batches, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For queries [Q, D], the k smallest squared L2 distances and indices into the bank, which comes
    as batches [n, D] (streamed: memory is the queries, one batch and the running top k)."""
    q = queries.double()
    best_d = torch.full((len(q), 0), float("inf"), dtype=torch.float64)
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    offset = 0
    for b in bank_batches:
        b = b.double()
        d = (q * q).sum(1, keepdim=True) - 2 * q @ b.T + (b * b).sum(1)[None]
        idx = torch.arange(offset, offset + len(b)).expand(len(q), -1)
        all_d, all_i = torch.cat([best_d, d], 1), torch.cat([best_i, idx], 1)
        keep = torch.topk(all_d, min(k, all_d.shape[1]), dim=1, largest=False).indices
        best_d, best_i = all_d.gather(1, keep), all_i.gather(1, keep)
        offset += len(b)
    return best_d.clamp_min(0), best_i


def neighbors_grid(generated: np.ndarray, level, idx: np.ndarray, gap: int = 4) -> np.ndarray:
    """One row per generated image: it, a gap, then its neighbours left to right."""
    n, k = idx.shape
    scale = max(1, 64 // generated.shape[1])             # small images are shown at 64 pixels at least
    up = lambda a: a.repeat(scale, 0).repeat(scale, 1)  # noqa: E731
    generated = generated.repeat(scale, 1).repeat(scale, 2)
    h, w, c = generated.shape[1:]
    out = np.full((n * h + (n - 1) * 2, (k + 1) * w + gap, c), 255, np.uint8)
    for r in range(n):
        y = r * (h + 2)
        out[y:y + h, :w] = generated[r]
        for j in range(k):
            out[y:y + h, w + gap + j * w: w + gap + (j + 1) * w] = up(np.asarray(level[int(idx[r, j])]).transpose(1, 2, 0))
    return out


def find_neighbors(gen: LoadedGenerator, data: str, seeds: list[int], k: int, space: str = "pixel",
                   inception: str | None = None, class_idx: int | str | None = None, data_count: int = 100000,
                   batch: int = 256, progress=None) -> dict:
    """The k nearest training images of each generated image, in pixel space or Inception pool3 space."""
    from .data.load import load_images

    if k < 1:
        raise UsageError("--k must be >= 1")
    if space not in ("pixel", "inception"):
        raise UsageError(f"--space must be pixel or inception, got '{space}'")
    res = gen.resolution
    images = load_images(data, gen.net.resolution, gen.net.channels, data_count)
    level = images.levels[res]
    fakes = gen.generate(seeds=seeds, class_idx=class_idx).images      # [Q, H, W, C]
    fakes_chw = torch.from_numpy(fakes).permute(0, 3, 1, 2).float()
    if space == "inception":
        from .metrics.inception import load_inception
        net = load_inception(inception)
        embed = lambda x: net(x)[0]  # noqa: E731
    else:
        embed = lambda x: x.reshape(len(x), -1)  # noqa: E731

    def bank():
        for i in range(0, len(level), batch):
            x = torch.from_numpy(np.asarray(level[i:i + batch])).float()
            if progress:
                progress(len(x))
            with torch.no_grad():
                yield embed(x)

    with torch.no_grad():
        q = embed(fakes_chw)
    dist, idx = nearest_neighbors(q, bank(), min(k, len(level)))
    return {"generated": fakes, "indices": idx.numpy(), "distances": dist.sqrt().numpy(), "level": level}


GRID_PIXELS_MAX = 2 * Image.MAX_IMAGE_PIXELS     # past this Pillow refuses to open a PNG (a decompression bomb)


def write_images(gen: LoadedGenerator, seeds: list[int], outdir: str, grid: bool = False,
                 class_idx: int | str | None = None, truncate: float | None = None, progress=None,
                 batch: int = 16) -> list[str]:
    """``pggan generate``: one PNG per seed (seedNNNN.png), or one grid of them; returns the paths. Images
    are made and written ``batch`` at a time, so that any number of them fits in memory."""
    labels = gen.class_labels(class_idx, seeds)          # a bad --class fails before the folder is made
    side, cols = gen.resolution, max(1, int(round(len(seeds) ** 0.5)))
    if grid and len(seeds) * side * side > GRID_PIXELS_MAX:
        raise UsageError(f"a grid of {len(seeds)} images of {side}x{side} would be {len(seeds) * side * side / 1e6:.0f} "
                         f"megapixels, more than image viewers open ({GRID_PIXELS_MAX / 1e6:.0f}); give fewer seeds, "
                         f"or drop --grid for one file per image")
    os.makedirs(outdir, exist_ok=True)
    tiles, paths = [], []
    for i in range(0, len(seeds), batch):
        chunk = seeds[i:i + batch]
        images = gen.generate(seeds=chunk, labels=None if labels is None else labels[i:i + batch],
                              truncate=truncate).images
        if grid:
            tiles.append(images)
        else:
            for s, img in zip(chunk, images):
                paths.append(os.path.join(outdir, f"seed{s:04d}.png"))
                save_png(paths[-1], img)
        if progress:
            progress(len(chunk))
    if grid:
        paths.append(os.path.join(outdir, f"grid-seeds{seeds[0]}-{seeds[-1]}.png"))
        save_png(paths[-1], make_grid(np.concatenate(tiles), cols))
    return paths
