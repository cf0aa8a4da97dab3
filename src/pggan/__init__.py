"""pggan: Progressive Growing of GANs (Karras et al., ICLR 2018) in PyTorch."""
__version__ = "0.1.0"


def load_generator(path, device="cpu", use_ema=True):
    """See :func:`pggan.api.load_generator`."""
    from .api import load_generator as _load
    return _load(path, device=device, use_ema=use_ema)
