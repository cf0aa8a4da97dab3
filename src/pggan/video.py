"""Latent paths for videos and the video writer (MP4 through imageio-ffmpeg's own ffmpeg, GIF otherwise).

Latent interpolation as the paper's video made it: one random latent per frame (and per stream of a
grid), blurred across time with a circular Gaussian (so the video loops), each latent then put back
on the hypersphere of radius sqrt(dim), where the pixel-normalised input of G lives.
"""
from __future__ import annotations

import os

import numpy as np

from .util.device import MAX_MEMORY_FRACTION, available_memory
from .util.errors import UsageError
from .util.files import partial_file


def smooth_latent_path(frames: int, streams: int, dim: int, sigma: float, seed: int) -> np.ndarray:
    """[frames, streams, dim] float32: white noise blurred over time (sigma in frames, wrapping
    around), then each latent scaled to norm sqrt(dim)."""
    if frames < 1 or streams < 1:
        raise UsageError("a latent path needs at least one frame and one stream")
    z = blur_over_time(np.random.default_rng(seed).standard_normal((frames, streams, dim)), sigma)
    z *= np.sqrt(dim) / np.linalg.norm(z, axis=2, keepdims=True)
    return z.astype(np.float32)


def blur_over_time(x: np.ndarray, sigma: float) -> np.ndarray:
    """[frames, ...] blurred along the first axis by a Gaussian of ``sigma`` frames, wrapping around (so
    that the video loops without a seam); sigma 0 leaves it as it is."""
    if sigma <= 0:
        return x
    frames = len(x)
    t = np.arange(frames)
    d = np.minimum(t, frames - t).astype(np.float64)            # circular distance from frame 0
    kernel = np.exp(-0.5 * (d / sigma) ** 2)
    kernel /= kernel.sum()
    k = np.fft.rfft(kernel).reshape((-1,) + (1,) * (x.ndim - 1))
    return np.fft.irfft(np.fft.rfft(x, axis=0) * k, n=frames, axis=0)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between the directions of a and b; the norm is interpolated linearly."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(np.dot(ua, ub), -1.0, 1.0))
    if omega < 1e-6:
        u = ua
    else:
        u = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return (u * ((1 - t) * na + t * nb)).astype(np.float32)


def video_output(path: str) -> tuple[str, str]:
    """(path, kind) to write: an .mp4 through imageio-ffmpeg's own ffmpeg, or, where that package is not
    installed, a GIF beside it (the fallback; callers report the path actually written)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".mp4", ".gif"):
        raise UsageError(f"'{path}': the output must end in .mp4 or .gif")
    if ext == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            return os.path.splitext(path)[0] + ".gif", "gif"
    return path, ext[1:]


def check_frames_fit(kind: str, frames: int, height: int, width: int) -> None:
    """A GIF is assembled in memory; refuse one that would not fit, before any work is done."""
    need = frames * height * width * 3
    if kind == "gif" and need > MAX_MEMORY_FRACTION * available_memory():
        raise UsageError(f"{frames} frames of {width}x{height} need {need / 2 ** 30:.1f} GiB in memory for a GIF, "
                         f"more than half of the {available_memory() / 2 ** 30:.1f} GiB available; write an .mp4 "
                         f"(streamed to disk), or lower --duration, --fps or --size")


class VideoWriter:
    """Frames (uint8 [H, W, 3]) in, a finished file out: written beside the target and renamed at the
    end, so an interrupted job leaves no half-written video."""

    def __init__(self, path: str, fps: float, kind: str | None = None):
        self.path, self.fps, self.kind = path, fps, kind or video_output(path)[1]
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.fd, self.tmp = partial_file(path, suffix="." + self.kind)     # closed (unlocked) when finished
        self.frames: list = []
        self.gen = None
        self.count = 0

    def add(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self.kind == "mp4":
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))   # H.264 (yuv420p) needs even sizes
            if self.gen is None:
                import imageio_ffmpeg
                self.gen = imageio_ffmpeg.write_frames(self.tmp, (frame.shape[1], frame.shape[0]), fps=self.fps,
                                                       codec="libx264", pix_fmt_out="yuv420p", quality=8,
                                                       macro_block_size=1, ffmpeg_log_level="error")
                self.gen.send(None)
            self.gen.send(np.ascontiguousarray(frame))
        else:
            from PIL import Image
            self.frames.append(Image.fromarray(frame))
        self.count += 1

    def close(self) -> str:
        try:
            if self.count == 0:
                raise UsageError("no frames to write")
            if self.kind == "mp4":
                self.gen.close()
            else:
                self.frames[0].save(self.tmp, format="GIF", save_all=True, append_images=self.frames[1:],
                                    duration=max(20, int(round(1000 / self.fps))), loop=0)
            os.replace(self.tmp, self.path)
        finally:
            self._release()
        return self.path

    def abort(self) -> None:
        if self.gen is not None:
            try:
                self.gen.close()
            except Exception:  # noqa: BLE001 - the partial file is removed either way
                pass
        self._release()

    def _release(self) -> None:
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_video_frames(path: str) -> list[np.ndarray]:
    """Frames of a video written here (for tests and checks)."""
    if path.endswith(".gif"):
        from PIL import Image, ImageSequence
        with Image.open(path) as im:
            return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    import imageio_ffmpeg
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
