"""A generative adversarial network for the 8 x 8 digits (Goodfellow et al. 2014, "Generative
adversarial nets", NeurIPS; Sec. 3 for the minimax game and the non-saturating generator loss,
Algorithm 1 for the alternating updates).

The discriminator D maps an image to one logit, "real" being positive; the generator G maps a noise
vector z ~ N(0, I) to an image in [-1, 1] (tanh output). One training step updates D on a real and
a generated batch, then G so that D labels its samples real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp_course.training import History, TrainConfig, train

__all__ = ["Generator", "Discriminator", "GAN", "discriminator_loss", "generator_loss", "train_gan", "GANTrace",
           "CaptionGenerator", "CaptionDiscriminator", "CaptionGAN", "train_caption_gan"]


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


# --------------------------------------------------------------------------------------------------
# A GAN that draws from a caption: DCGAN layers, conditioned as GAN-CLS
# --------------------------------------------------------------------------------------------------
class CaptionGenerator(nn.Module):
    """Caption-conditioned DCGAN generator (Radford et al. 2016; conditioning as Reed et al. 2016, "Generative
    adversarial text to image synthesis", section 4): the caption vector (B, W) is compressed by a linear layer
    and a leaky ReLU to ``cond`` numbers, joined to z (B, z_dim), and up-sampled by transposed convolutions
    (BatchNorm, ReLU; tanh at the end) from 4 x 4 to ``side`` x ``side`` RGB in [-1, 1].

    Reed et al. encode the text with a char-CNN-RNN; the course feeds a bag of words (the scenes' captions
    are short and their word order matters less than which words occur).

    Raises:
        ValueError: ``side`` not 4 times a power of 2, or inputs that are not (B, W) and (B, z_dim).
    """

    def __init__(self, num_words: int, z_dim: int = 64, cond: int = 64, width: int = 32, side: int = 64):
        super().__init__()
        n_up = int(round(math.log2(side / 4)))
        if side < 8 or 4 * 2 ** n_up != side:
            raise ValueError(f"side must be 4 times a power of 2 (8, 16, 32, 64, ...), got {side}")
        self.num_words, self.z_dim, self.side, self.width = num_words, z_dim, side, width
        self.text = nn.Sequential(nn.Linear(num_words, cond), nn.LeakyReLU(0.2))
        self.fc = nn.Linear(z_dim + cond, 4 * 4 * 8 * width)
        layers, c = [], 8 * width
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        self.net = nn.Sequential(nn.BatchNorm2d(8 * width), nn.ReLU(), *layers, nn.ConvTranspose2d(c, 3, 4, 2, 1), nn.Tanh())

    def forward(self, captions: Tensor, z: Tensor) -> Tensor:
        """captions (B, W) bag of words, z (B, z_dim) -> images (B, 3, side, side) in [-1, 1]."""
        if not isinstance(captions, Tensor) or captions.ndim != 2 or captions.shape[1] != self.num_words:
            raise ValueError(f"captions must be (B, {self.num_words}) bags of words, got {tuple(getattr(captions, 'shape', ()))}")
        if not isinstance(z, Tensor) or tuple(z.shape) != (captions.shape[0], self.z_dim):
            raise ValueError(f"z must be (B, z_dim) = ({captions.shape[0]}, {self.z_dim}), got {tuple(getattr(z, 'shape', ()))}")
        h = self.fc(torch.cat([z, self.text(captions)], 1))  # (B, 4*4*8w)
        return self.net(h.view(-1, 8 * self.width, 4, 4))  # (B, 8w, 4, 4) -> (B, 3, side, side)


class CaptionDiscriminator(nn.Module):
    """GAN-CLS discriminator (Reed et al. 2016, section 4): strided convolutions (leaky ReLU; BatchNorm after the
    first) down to 4 x 4, the compressed caption replicated over the 4 x 4 grid and concatenated, a 1 x 1
    convolution, then one 4 x 4 convolution to a logit (B,): positive = a real image that matches its caption."""

    def __init__(self, num_words: int, cond: int = 64, width: int = 32, side: int = 64):
        super().__init__()
        n_down = int(round(math.log2(side / 4)))
        self.num_words, self.side = num_words, side
        self.text = nn.Sequential(nn.Linear(num_words, cond), nn.LeakyReLU(0.2))
        layers, c = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2)], width
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        self.net = nn.Sequential(*layers)
        self.joint = nn.Sequential(nn.Conv2d(c + cond, c, 1), nn.BatchNorm2d(c), nn.LeakyReLU(0.2), nn.Conv2d(c, 1, 4))

    def forward(self, images: Tensor, captions: Tensor) -> Tensor:
        """images (B, 3, side, side) in [-1, 1], captions (B, W) -> logits (B,)."""
        if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, self.side, self.side):
            raise ValueError(f"images must be (B, 3, {self.side}, {self.side}), got {tuple(getattr(images, 'shape', ()))}")
        h = self.net(images)  # (B, C, 4, 4)
        t = self.text(captions)[:, :, None, None].expand(-1, -1, 4, 4)  # (B, cond) -> (B, cond, 4, 4)
        return self.joint(torch.cat([h, t], 1)).flatten()  # (B, 1, 1, 1) -> (B,)


class CaptionGAN(nn.Module):
    """The pair (G, D) for captions, in one module."""

    def __init__(self, num_words: int, z_dim: int = 64, cond: int = 64, width: int = 32, side: int = 64):
        super().__init__()
        self.G = CaptionGenerator(num_words, z_dim, cond, width, side)
        self.D = CaptionDiscriminator(num_words, cond, width, side)

    @torch.no_grad()
    def sample(self, captions: Tensor, seed: int = 0) -> Tensor:
        """One image per caption vector: (B, 3, side, side) in [-1, 1], from seeded noise (G in eval mode)."""
        was = self.G.training
        self.G.eval()
        z = torch.randn(len(captions), self.G.z_dim, generator=torch.Generator().manual_seed(seed))
        out = self.G(captions, z.to(captions.device))
        self.G.train(was)
        return out


def train_caption_gan(gan: CaptionGAN, real: Tensor, captions: Tensor, image_of: Tensor, *, steps: int = 2000,
                      batch_size: int = 64, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), seed: int = 0,
                      progress: bool = False) -> History:
    """GAN-CLS training (Reed et al. 2016, Algorithm 1): D learns to accept (real image, its caption) and to reject
    both (real image, another image's caption) and (generated image, caption); G the non-saturating loss.

    Args:
        real: (I, 3, side, side) images in [-1, 1]. captions: (P, W) caption vectors. image_of: (P,) the image of
            each caption.

    Returns:
        The History: ``loss`` (G's) and ``d_loss``.

    Raises:
        ValueError: images outside [-1, 1] or of the wrong shape, or ``image_of`` not matching the captions.
    """
    side = gan.G.side
    if not isinstance(real, Tensor) or real.ndim != 4 or tuple(real.shape[1:]) != (3, side, side):
        raise ValueError(f"real must be (I, 3, {side}, {side}) images, got {tuple(getattr(real, 'shape', ()))}")
    if real.min() < -1 - 1e-6 or real.max() > 1 + 1e-6:
        raise ValueError("real images must lie in [-1, 1] (the generator's tanh range)")
    if tuple(image_of.shape) != (captions.shape[0],) or int(image_of.max()) >= len(real) or int(image_of.min()) < 0:
        raise ValueError(f"image_of must be ({captions.shape[0]},) indices into the {len(real)} images")
    torch.manual_seed(seed)
    d_opt = torch.optim.Adam(gan.D.parameters(), lr=lr, betas=betas)
    gen = torch.Generator().manual_seed(seed)

    def batches(step: int):
        rows = torch.randint(len(captions), (batch_size,), generator=gen)
        wrong = torch.randint(len(captions), (batch_size,), generator=gen)
        return real[image_of[rows]], captions[rows], captions[wrong], torch.randn(batch_size, gan.G.z_dim, generator=gen)

    def step_fn(model: CaptionGAN, batch):
        x, right, wrong, z = batch
        fake = model.G(right, z)
        s_real = model.D(x, right)
        s_wrong = model.D(x, wrong)
        s_fake = model.D(fake.detach(), right)
        zeros = torch.zeros_like(s_real)
        d_loss = F.binary_cross_entropy_with_logits(s_real, torch.ones_like(s_real)) + 0.5 * (
            F.binary_cross_entropy_with_logits(s_wrong, zeros) + F.binary_cross_entropy_with_logits(s_fake, zeros))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        return {"loss": generator_loss(model.D(fake, right)), "d_loss": d_loss.detach()}

    cfg = TrainConfig(steps=steps, lr=lr, seed=seed, progress=progress, grad_clip=None, precision="fp32")
    return train(gan, batches, step_fn, cfg, parameters=gan.G.parameters())
