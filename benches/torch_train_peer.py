#!/usr/bin/env python3
"""The peer for `srsnet bench --train seg`: the same segmentation-stage training step in PyTorch (eager, CPU).

The lite preset (`models/lite.json`) written from `../shared/docs/srsnet-reference.md` (sections 2-4 and 7):
R's encoder (stem + conv0_0 ... conv3_0) runs frozen under no-grad with its BatchNorms in training mode, as
the reference's stage 2 does; S runs forward and backward; the loss is 0.5·BCE-with-logits + (1 − mean soft
Dice); SGD with momentum 0.9 and weight decay 1e-4. DPConv uses the reference's grouped-convolution form (one
conv2d with groups = B over per-sample kernels). Input and mask as `srsnet bench --train` makes them: N(0, 0.3²)
noise and an empty mask. The values are not compared with ours (the parity fixtures do that); this times the
same work, layer for layer.

Prints one JSON line: images_per_s, seconds_per_step, threads. Usage:
  torch_train_peer.py [--threads 2] [--batch 8] [--size 256] [--steps 3]
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LITE = {"in": 1, "r_stem": 8, "r_widths": [8, 12, 16, 16], "s_stem": 8, "s_widths": [8, 16, 32, 64], "k": 3}


def conv(cin, cout, k=3, bias=True):
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)


class ChannelAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = max(c // 8, 1)
        self.fc1, self.fc2 = conv(c, h, 1, bias=False), conv(h, c, 1, bias=False)

    def forward(self, x):
        mlp = lambda v: self.fc2(F.relu(self.fc1(v)))
        return torch.sigmoid(mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = conv(2, 1, 7, bias=False)

    def forward(self, x):
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return torch.sigmoid(self.conv(s))


class Block(nn.Module):
    """Res-CBAM block (reference 2.3)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.c1, self.b1 = conv(cin, cout), nn.BatchNorm2d(cout)
        self.c2, self.b2 = conv(cout, cout), nn.BatchNorm2d(cout)
        self.ca, self.sa = ChannelAttention(cout), SpatialAttention()
        self.short = None if cin == cout else nn.Sequential(conv(cin, cout, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        r = x if self.short is None else self.short(x)
        t = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        t = t * self.ca(t)
        t = t * self.sa(t)
        return F.relu(t + r)


class ConvBnRelu(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(conv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU())


def up(x, f=2):
    return F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=True)


pool = lambda x: F.max_pool2d(x, 2)


class Encoder(nn.Module):
    """Stem + conv0_0 ... conv3_0, shared by R's encoder and S."""

    def __init__(self, cin, stem, nb):
        super().__init__()
        self.stem = ConvBnRelu(cin, stem)
        self.c00, self.c10 = Block(stem, nb[0]), Block(nb[0], nb[1])
        self.c20, self.c30 = Block(nb[1], nb[2]), Block(nb[2], nb[3])

    def forward(self, x):
        x00 = self.c00(self.stem(x))
        x10 = self.c10(pool(x00))
        x20 = self.c20(pool(x10))
        return x00, x10, x20, self.c30(pool(x20))


class DPConv(nn.Module):
    """Reference 2.8, in its grouped-convolution form."""

    def __init__(self, m, n, k, z):
        super().__init__()
        self.ca, self.sa = ChannelAttention(z), SpatialAttention()
        self.a = conv(z, z, 1)
        self.gen = nn.Conv2d(z, n * m * k * k, 1, groups=z)
        self.m, self.n, self.k = m, n, k

    def forward(self, x, y):
        y = y * self.sa(y * self.ca(y))
        p = F.adaptive_avg_pool2d(self.a(y), 1)
        theta = self.gen(p)  # (B, N·M·K², 1, 1)
        b, _, h, w = x.shape
        kernels = theta.view(b * self.n, self.m, self.k, self.k)
        out = F.conv2d(x.reshape(1, b * self.m, h, w), kernels, padding=self.k // 2, groups=b)
        return out.view(b, self.n, h, w)


class Spu(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.body = ConvBnRelu(cin // 4, cout)

    def forward(self, x):
        return self.body(F.pixel_shuffle(x, 2))


class Eca(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        g = F.adaptive_max_pool2d(torch.sigmoid(x), 1)
        w = torch.sigmoid(self.conv(g.flatten(2).transpose(1, 2))).transpose(1, 2).unsqueeze(-1)
        return x * w


class Blam(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = nn.Sequential(conv(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(), conv(c, c, 1), nn.BatchNorm2d(c), nn.ReLU())
        self.eca = Eca()
        self.out = nn.Sequential(conv(2 * c, c, 1), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, low, high):
        return self.out(torch.cat([self.eca(high), self.a(low)], 1))


class Seg(nn.Module):
    """S (reference 4) at the lite widths, blocks [1, 1, 1, 1]."""

    def __init__(self, cfg):
        super().__init__()
        nb, z = cfg["s_widths"], cfg["r_widths"][3]
        self.enc = Encoder(cfg["in"], cfg["s_stem"], nb)
        self.dp = DPConv(nb[3], nb[3], cfg["k"], z)
        self.c01 = Block(nb[0] + nb[1], nb[0])
        self.c11 = Block(nb[1] + nb[2] + nb[0], nb[1])
        self.c21 = Block(nb[2] + nb[3] + nb[1], nb[2])
        self.c02 = Block(2 * nb[0] + nb[1], nb[0])
        self.c12 = Block(2 * nb[1] + nb[2] + nb[0], nb[1])
        self.c03 = Block(2 * nb[0] + nb[1], nb[0])
        self.up3, self.up2, self.up1 = Spu(nb[3], nb[2]), Spu(nb[2], nb[1]), Spu(nb[1], nb[0])
        self.f3, self.f2, self.f1 = Blam(nb[2]), Blam(nb[1]), Blam(nb[0])
        self.side2, self.side3 = conv(nb[1], nb[0], 1), conv(nb[2], nb[0], 1)
        self.final = Block(3 * nb[0], nb[0])
        self.head = conv(nb[0], 1, 1)

    def forward(self, x, y):
        x00, x10, x20, x30 = self.enc(x)
        x30 = x30 + self.dp(x30, y)
        x01 = self.c01(torch.cat([x00, up(x10)], 1))
        x11 = self.c11(torch.cat([x10, up(x20), pool(x01)], 1))
        x21 = self.c21(torch.cat([x20, up(x30), pool(x11)], 1))
        x02 = self.c02(torch.cat([x01, up(x11), x00], 1))
        x12 = self.c12(torch.cat([x11, up(x21), x10, pool(x02)], 1))
        x03 = self.c03(torch.cat([x02, up(x12), x01], 1))
        f3 = self.f3(x21, self.up3(x30))
        f2 = self.f2(x12, self.up2(f3))
        f1 = self.f1(x03, self.up1(f2))
        cat = torch.cat([f1, up(self.side2(f2)), up(self.side3(f3), 4)], 1)
        return self.head(self.final(cat))


def loss_fn(logits, mask):
    bce = F.binary_cross_entropy_with_logits(logits, mask)
    p = torch.sigmoid(logits).flatten(1)
    y = mask.flatten(1)
    dice = (2 * (p * y).sum(1) + 1e-5) / (p.sum(1) + y.sum(1) + 1e-5)
    return 0.5 * bce + (1 - dice.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(41)
    recon, seg = Encoder(LITE["in"], LITE["r_stem"], LITE["r_widths"]), Seg(LITE)
    for p in recon.parameters():
        p.requires_grad_(False)
    recon.train()  # the reference never switches R to eval mode in stage 2
    seg.train()
    opt = torch.optim.SGD(seg.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(a.batch, LITE["in"], a.size, a.size) * 0.3
    mask = torch.zeros(a.batch, 1, a.size, a.size)

    def step():
        with torch.no_grad():
            y = recon(x)[3]
        loss = loss_fn(seg(x, y), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - t0
    print(json.dumps({"images_per_s": a.steps * a.batch / secs, "seconds_per_step": secs / a.steps,
                      "threads": a.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
