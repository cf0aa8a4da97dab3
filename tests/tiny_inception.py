"""A narrow Inception-v3 weights file with the exact names and structure of the FID weights (widths
divided by ``div``), written from the published layer table, so the loading code and the FID/IS
pipeline can be tested without the real 95 MB file."""
import torch


def inception_layers(div: int = 16, classes: int = 1008) -> dict:
    """{conv name: (out, in, kh, kw)} and the fc shape, of the standard network with widths / div."""
    c = lambda n: n // div  # noqa: E731
    convs = {"Conv2d_1a_3x3": (c(32), 3, 3, 3), "Conv2d_2a_3x3": (c(32), c(32), 3, 3),
             "Conv2d_2b_3x3": (c(64), c(32), 3, 3), "Conv2d_3b_1x1": (c(80), c(64), 1, 1),
             "Conv2d_4a_3x3": (c(192), c(80), 3, 3)}

    def block_a(p, i, pool):
        convs.update({f"{p}.branch1x1": (c(64), i, 1, 1), f"{p}.branch5x5_1": (c(48), i, 1, 1),
                      f"{p}.branch5x5_2": (c(64), c(48), 5, 5), f"{p}.branch3x3dbl_1": (c(64), i, 1, 1),
                      f"{p}.branch3x3dbl_2": (c(96), c(64), 3, 3), f"{p}.branch3x3dbl_3": (c(96), c(96), 3, 3),
                      f"{p}.branch_pool": (pool, i, 1, 1)})
        return c(64) + c(64) + c(96) + pool

    def block_c(p, i, c7):
        convs.update({f"{p}.branch1x1": (c(192), i, 1, 1), f"{p}.branch7x7_1": (c7, i, 1, 1),
                      f"{p}.branch7x7_2": (c7, c7, 1, 7), f"{p}.branch7x7_3": (c(192), c7, 7, 1),
                      f"{p}.branch7x7dbl_1": (c7, i, 1, 1), f"{p}.branch7x7dbl_2": (c7, c7, 7, 1),
                      f"{p}.branch7x7dbl_3": (c7, c7, 1, 7), f"{p}.branch7x7dbl_4": (c7, c7, 7, 1),
                      f"{p}.branch7x7dbl_5": (c(192), c7, 1, 7), f"{p}.branch_pool": (c(192), i, 1, 1)})
        return 4 * c(192)

    def block_e(p, i):
        convs.update({f"{p}.branch1x1": (c(320), i, 1, 1), f"{p}.branch3x3_1": (c(384), i, 1, 1),
                      f"{p}.branch3x3_2a": (c(384), c(384), 1, 3), f"{p}.branch3x3_2b": (c(384), c(384), 3, 1),
                      f"{p}.branch3x3dbl_1": (c(448), i, 1, 1), f"{p}.branch3x3dbl_2": (c(384), c(448), 3, 3),
                      f"{p}.branch3x3dbl_3a": (c(384), c(384), 1, 3), f"{p}.branch3x3dbl_3b": (c(384), c(384), 3, 1),
                      f"{p}.branch_pool": (c(192), i, 1, 1)})
        return c(320) + 4 * c(384) + c(192)

    x = block_a("Mixed_5b", c(192), c(32))
    x = block_a("Mixed_5c", x, c(64))
    x = block_a("Mixed_5d", x, c(64))
    convs.update({"Mixed_6a.branch3x3": (c(384), x, 3, 3), "Mixed_6a.branch3x3dbl_1": (c(64), x, 1, 1),
                  "Mixed_6a.branch3x3dbl_2": (c(96), c(64), 3, 3), "Mixed_6a.branch3x3dbl_3": (c(96), c(96), 3, 3)})
    x = c(384) + c(96) + x
    for p, c7 in (("Mixed_6b", c(128)), ("Mixed_6c", c(160)), ("Mixed_6d", c(160)), ("Mixed_6e", c(192))):
        x = block_c(p, x, c7)
    convs.update({"Mixed_7a.branch3x3_1": (c(192), x, 1, 1), "Mixed_7a.branch3x3_2": (c(320), c(192), 3, 3),
                  "Mixed_7a.branch7x7x3_1": (c(192), x, 1, 1), "Mixed_7a.branch7x7x3_2": (c(192), c(192), 1, 7),
                  "Mixed_7a.branch7x7x3_3": (c(192), c(192), 7, 1), "Mixed_7a.branch7x7x3_4": (c(192), c(192), 3, 3)})
    x = c(320) + c(192) + x
    x = block_e("Mixed_7b", x)
    x = block_e("Mixed_7c", x)
    return {"convs": convs, "fc": (classes, x)}


def tiny_inception_state(div: int = 16, classes: int = 1008, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    layers = inception_layers(div, classes)
    sd = {}
    for name, shape in layers["convs"].items():
        fan_in = shape[1] * shape[2] * shape[3]
        sd[f"{name}.conv.weight"] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        out = shape[0]
        sd[f"{name}.bn.weight"] = 1.0 + 0.1 * torch.randn(out, generator=g)
        sd[f"{name}.bn.bias"] = torch.zeros(out)
        sd[f"{name}.bn.running_mean"] = torch.zeros(out)
        sd[f"{name}.bn.running_var"] = 1.0 + 0.1 * torch.rand(out, generator=g)
        sd[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    classes, dim = layers["fc"]
    sd["fc.weight"] = torch.randn(classes, dim, generator=g) * dim ** -0.5
    sd["fc.bias"] = torch.zeros(classes)
    return sd


def write_tiny_inception(path, div: int = 16, classes: int = 1008) -> str:
    torch.save(tiny_inception_state(div, classes), str(path))
    return str(path)
