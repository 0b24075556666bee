"""A generative adversarial network for the 8 x 8 digits (Goodfellow et al. 2014, "Generative
adversarial nets", NeurIPS; Sec. 3 for the minimax game and the non-saturating generator loss,
Algorithm 1 for the alternating updates).

The discriminator D maps an image to one logit, "real" being positive; the generator G maps a noise
vector z ~ N(0, I) to an image in [-1, 1] (tanh output). One training step updates D on a real and
a generated batch, then G so that D labels its samples real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.training import History, TrainConfig, train

__all__ = ["Generator", "Discriminator", "GAN", "discriminator_loss", "generator_loss", "train_gan", "GANTrace"]


class Generator(nn.Module):
    """MLP generator: z (B, z_dim) -> images (B, 1, side, side) in [-1, 1].

    Raises:
        ValueError: if z is not (B, z_dim).
    """

    def __init__(self, z_dim: int = 16, hidden: int = 128, side: int = 8):
        super().__init__()
        self.z_dim, self.side = z_dim, side
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, side * side), nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be a (B, {self.z_dim}) tensor, got {tuple(getattr(z, 'shape', ()))}")
        return self.net(z).view(-1, 1, self.side, self.side)  # (B, side*side) -> (B, 1, side, side)


class Discriminator(nn.Module):
    """MLP discriminator: images (B, 1, side, side) -> one logit per image (B,), positive = real.

    Raises:
        ValueError: if the images are not (B, 1, side, side).
    """

    def __init__(self, hidden: int = 128, side: int = 8):
        super().__init__()
        self.side = side
        self.net = nn.Sequential(
            nn.Linear(side * side, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (1, self.side, self.side):
            raise ValueError(f"images must be (B, 1, {self.side}, {self.side}), got {tuple(getattr(x, 'shape', ()))}")
        return self.net(x.flatten(1)).squeeze(1)  # (B, side*side) -> (B,)


class GAN(nn.Module):
    """The pair (G, D) in one module, so the training loop can move and save both."""

    def __init__(self, z_dim: int = 16, hidden: int = 128, side: int = 8):
        super().__init__()
        self.G = Generator(z_dim, hidden, side)
        self.D = Discriminator(hidden, side)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> Tensor:
        """n generated images (n, 1, side, side) in [-1, 1], from seeded noise."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.G.z_dim, generator=g).to(next(self.parameters()).device)
        return self.G(z)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D's loss: -[log D(x) + log(1 - D(G(z)))], averaged; logits (B,) -> scalar (Goodfellow et al. 2014, Eq. 1).

    Computed as binary cross-entropy on logits: target 1 for real images, 0 for generated ones.
    """
    return F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
        F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_loss(fake_logits: Tensor) -> Tensor:
    """G's non-saturating loss -log D(G(z)), averaged; logits (B,) -> scalar (Goodfellow et al. 2014, Sec. 3).

    Minimising log(1 - D(G(z))) gives G almost no gradient early on, when D rejects its samples
    confidently; maximising log D(G(z)) has the same fixed point and strong gradients.
    """
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@dataclass
class GANTrace:
    """What :func:`train_gan` recorded: the History and the sample grids taken during training."""

    history: History
    snapshots: dict[int, Tensor] = field(default_factory=dict)


def train_gan(gan: GAN, real: Tensor, *, steps: int = 2000, batch_size: int = 64, lr_g: float = 2e-4,
              lr_d: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), seed: int = 0,
              snapshot_every: int = 0, n_snapshot: int = 16, progress: bool = False) -> GANTrace:
    """Train ``gan`` on ``real`` images (N, 1, side, side) in [-1, 1] with alternating updates.

    :func:`vlp_course.training.train` owns one optimizer; it optimises G. D has its own Adam, stepped
    inside the step function before G's update (Algorithm 1 with k = 1); training runs in fp32. The History records
    ``loss`` (G's), ``d_loss``, ``d_real`` and ``d_fake`` (D's accuracy on the real and generated
    batch). Snapshots: ``n_snapshot`` samples from fixed noise every ``snapshot_every`` steps.

    Raises:
        ValueError: if ``real`` is not (N, 1, side, side) or leaves [-1, 1].
    """
    side = gan.G.side
    if not isinstance(real, Tensor) or real.ndim != 4 or tuple(real.shape[1:]) != (1, side, side):
        raise ValueError(f"real must be (N, 1, {side}, {side}) images, got {tuple(getattr(real, 'shape', ()))}")
    if real.min() < -1 - 1e-6 or real.max() > 1 + 1e-6:
        raise ValueError("real images must lie in [-1, 1] (the generator's tanh range)")
    torch.manual_seed(seed)
    d_opt = torch.optim.Adam(gan.D.parameters(), lr=lr_d, betas=betas)
    gen = torch.Generator().manual_seed(seed)
    fixed_z = torch.randn(n_snapshot, gan.G.z_dim, generator=gen)
    trace = GANTrace(history=History())
    counter = {"step": 0}

    def batches(step: int):
        idx = torch.randint(len(real), (batch_size,), generator=gen)
        return real[idx], torch.randn(batch_size, gan.G.z_dim, generator=gen)

    def step_fn(model: GAN, batch):
        x, z = batch
        # 1. discriminator update on a real and a generated batch (G frozen: detach)
        fake = model.G(z)
        real_logits, fake_logits = model.D(x), model.D(fake.detach())
        d_loss = discriminator_loss(real_logits, fake_logits)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        # 2. generator loss, with the updated D; train() backpropagates it and steps G's optimizer
        g_loss = generator_loss(model.D(fake))
        step = counter["step"]
        counter["step"] += 1
        if snapshot_every and step % snapshot_every == 0:
            with torch.no_grad():
                trace.snapshots[step] = model.G(fixed_z.to(z.device)).cpu()
        return {
            "loss": g_loss, "d_loss": d_loss.detach(),
            "d_real": (real_logits > 0).float().mean(), "d_fake": (fake_logits < 0).float().mean(),
        }

    # TrainConfig has no Adam betas: G uses AdamW with weight_decay 0 (= Adam) and default betas.
    # fp32 everywhere: D's update happens outside the loop's mixed-precision gradient scaler.
    cfg = TrainConfig(steps=steps, lr=lr_g, seed=seed, progress=progress, grad_clip=None, precision="fp32")
    hist = train(gan, batches, step_fn, cfg, parameters=gan.G.parameters())
    with torch.no_grad():
        trace.snapshots[steps] = gan.G(fixed_z.to(next(gan.parameters()).device)).cpu()
    trace.history = hist
    return trace
