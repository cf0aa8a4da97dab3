"""Images for the explorer: generated off the request thread by a bounded pool, cached by (network,
latent, options). Only files under the served path can be opened."""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..api import latents_for_seeds, load_generator
from ..classes import blend_classes
from ..util.errors import UsageError
from ..util.grids import make_grid, png_bytes
from ..video import slerp

MAX_SEED = 2 ** 32 - 1


class Busy(Exception):
    """The queue of image requests is full; the client should retry."""


class LRU:
    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def safe_path(root: str, rel: str, suffixes: tuple[str, ...]) -> str:
    """``root/rel`` when it is an existing file under ``root`` with one of ``suffixes`` (``root`` itself
    when a single file is served); ``..``, absolute paths and links out of ``root`` are refused."""
    root = os.path.realpath(root)
    if not rel or os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
        raise UsageError(f"'{rel}' is not a path under the served folder")
    if os.path.isfile(root):
        if rel != os.path.basename(root):
            raise UsageError(f"'{rel}' is not the served network")
        return root
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([path, root]) != root or not os.path.isfile(path) or not path.endswith(suffixes):
        raise UsageError(f"'{rel}' is not a file the server shows")
    return path


class ImageService:
    def __init__(self, root: str, workers: int = 2, queue: int = 64, max_images: int = 64, device="cpu"):
        self.root, self.device, self.max_images = root, device, max_images
        self.max_pixels = max_images * 256 * 256          # memory: fewer images per request at high resolution
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="pggan-serve")
        self.slots = threading.BoundedSemaphore(queue)
        self.generators, self.cache = LRU(4), LRU(1024)

    def submit(self, fn, *args):
        """Run ``fn`` in the pool; Busy when ``queue`` requests already wait."""
        if not self.slots.acquire(blocking=False):
            raise Busy("the server is busy with other images; retry in a moment")
        future = self.pool.submit(fn, *args)
        future.add_done_callback(lambda _: self.slots.release())
        return future

    def generator(self, rel: str):
        path = safe_path(self.root, rel, (".pt", ".safetensors"))
        key = (path, os.path.getmtime(path))
        gen = self.generators.get(key)
        if gen is None:
            gen = load_generator(path, device=self.device)
            self.generators.put(key, gen)
        return gen, key

    def latents(self, gen, seeds, truncate):
        for s in seeds:
            if not 0 <= s <= MAX_SEED:
                raise UsageError(f"seed {s} is outside 0..{MAX_SEED}")
        if len(seeds) > self.max_images:
            raise UsageError(f"{len(seeds)} images asked for; this server makes at most {self.max_images} at once")
        if truncate is not None and not 0 < truncate <= 10:
            raise UsageError("truncate must be in (0, 10]")
        return latents_for_seeds(seeds, gen.z_dim, truncate).numpy()

    def render(self, rel: str, z: np.ndarray, labels, cols: int, what: str) -> bytes:
        """PNG of G(z, labels) (a grid when several), cached by (network, latents, classes, layout);
        ``labels``: class numbers [N] or class vectors [N, C] (None for an unconditional generator)."""
        gen, key = self.generator(rel)
        if len(z) * gen.resolution ** 2 > self.max_pixels:
            raise UsageError(f"{len(z)} images of {gen.resolution}x{gen.resolution} are more than this server makes "
                             f"at once ({self.max_pixels // gen.resolution ** 2} at this resolution)")
        digest = hashlib.sha1(np.ascontiguousarray(z, np.float32).tobytes())
        if labels is not None:
            digest.update(np.ascontiguousarray(labels, np.float32).tobytes())
        ckey = (key, digest.hexdigest(), cols, what)
        data = self.cache.get(ckey)
        if data is None:
            images = gen.generate(z=z, labels=labels).images
            data = png_bytes(images[0] if len(images) == 1 else make_grid(images, cols))
            self.cache.put(ckey, data)
        return data

    def classes(self, rel: str) -> dict:
        """What the explorer needs to know of a network's classes (none, the user's, or pggan's clusters)."""
        gen, _ = self.generator(rel)
        prior = gen.classes
        if prior is None:
            return {"size": 0}
        return {"size": prior.size, "source": prior.source, "freqs": [round(f, 4) for f in prior.freqs]}

    def seeds_grid(self, rel, seeds, truncate, class_idx, cols):
        gen, _ = self.generator(rel)
        z = self.latents(gen, seeds, truncate)
        return self.render(rel, z, gen.class_labels(class_idx, seeds), cols, "grid")

    def interpolation(self, rel, a, b, t, truncate, class_idx):
        """Between two seeds: z along the great circle, a conditional generator's class vector linearly
        from a's class to b's (as ``pggan interpolate --strip``), so the slider has no jump."""
        gen, _ = self.generator(rel)
        if not 0 <= t <= 1:
            raise UsageError("t must be in [0, 1]")
        za, zb = self.latents(gen, [a, b], truncate)
        labels = gen.class_labels(class_idx, [a, b])
        if labels is not None:
            labels = blend_classes(labels[0], labels[1], gen.classes.size, [t])
        return self.render(rel, slerp(za, zb, t)[None], labels, 1, "interp")

    def nearby(self, rel, seed, strength, count, truncate, class_idx):
        """'More like this': the seed's latent and ``count - 1`` small perturbations of it (seeded), all of
        the seed's class."""
        gen, _ = self.generator(rel)
        if not 0 < strength <= 2:
            raise UsageError("strength must be in (0, 2]")
        if not 1 <= count <= self.max_images:
            raise UsageError(f"count must be from 1 to {self.max_images}")
        z0 = self.latents(gen, [seed], truncate)[0]
        noise = np.random.default_rng(seed).standard_normal((count - 1, gen.z_dim)).astype(np.float32)
        z = np.concatenate([z0[None], z0[None] + strength * noise])
        return self.render(rel, z, gen.class_labels(class_idx, [seed] * count), int(np.ceil(np.sqrt(count))),
                           "nearby")

    def directions(self, rel, kind: str, count: int = 3, seed: int = 0) -> np.ndarray:
        """Unit directions in z [count, z_dim]: 'random' (seeded), or 'principal': the right singular
        vectors of G's first layer (the latent directions its 4x4 features respond to most)."""
        gen, key = self.generator(rel)
        if not 1 <= count <= 16:
            raise UsageError("count must be from 1 to 16")
        if kind == "random":
            d = np.random.default_rng(seed).standard_normal((count, gen.z_dim))
        elif kind == "principal":
            w = gen.G.blocks["2"].dense.weight.detach().float().cpu().numpy()[:, :gen.z_dim]     # [out, z]
            d = np.linalg.svd(w, full_matrices=False)[2][:count]
        else:
            raise UsageError("kind must be random or principal")
        return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)

    def along(self, rel, seed, kind, amounts, truncate, class_idx):
        """The seed's image moved along the first len(amounts) directions by those amounts (in units of
        sqrt(z_dim), the latent's own length: 1 = as far as the latent is long)."""
        gen, _ = self.generator(rel)
        if not 1 <= len(amounts) <= 16 or any(abs(a) > 2 for a in amounts):
            raise UsageError("give 1 to 16 amounts, each in [-2, 2]")
        z = self.latents(gen, [seed], truncate)[0]
        d = self.directions(rel, kind, len(amounts), seed=0)
        z = z + np.sqrt(gen.z_dim) * (np.asarray(amounts, np.float32)[:, None] * d).sum(0)
        return self.render(rel, z[None].astype(np.float32), gen.class_labels(class_idx, [seed]), 1, f"along-{kind}")

    def latent(self, rel, seed, truncate):
        gen, _ = self.generator(rel)
        return self.latents(gen, [seed], truncate)[0]

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
