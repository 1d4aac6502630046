"""Fourier parametrizations of a picture: Lucid's 1/f-scaled spectrum, MACO's phase-only spectrum.

Usage::

    param = FourierParam(size=32, decay_power=1.0)           # state (B, 3, S, S//2+1, 2): real/imag spectrum
    x0 = param.random_state(gens, std=0.01)                  # Lucid's start: a small random spectrum
    rgb01 = param.image(x0)                                  # (B, 3, S, S), grey at the start
    state = param.from_image(real_rgb01)                     # the spectrum that draws this picture

    magnitude = mean_amplitude_spectrum(real_images, 32)     # (3, S, S//2+1), or power_law_magnitude(32)
    maco = PhaseParam(magnitude)                             # state (B, 3, S, S//2+1): the phase only
    rgb01 = maco.image(maco.random_state(gens))

Both end in Lucid's colour decorrelation (a fixed 3x3 square root of ImageNet's colour covariance, columns
normalized; Olah et al. 2017, "Feature Visualization", Distill) and a sigmoid to [0, 1]. Every operation is
per picture (MACO's standardization too), so a chain's picture never depends on its batch.
"""

from __future__ import annotations

import torch

# Square root of ImageNet's RGB colour covariance (Lucid's color_correlation_svd_sqrt), rows = RGB.
COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
LUCID_MAGIC = 4.0  # Lucid divides the spatial image by 4 before the colour map
EDGE_EPS = 0.02  # from_image: pixels are clamped to [eps, 1 - eps] before the logit (finite state)


def color_matrix(device: torch.device | None = None) -> torch.Tensor:
    """(3, 3) colour correlation with its largest column norm scaled to 1 (Lucid's normalized form)."""
    c = COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max()
    return c.to(device) if device is not None else c


def recorrelate(t: torch.Tensor) -> torch.Tensor:
    """Decorrelated colour space -> RGB logits, ``out_d = sum_c C[d, c] t_c``: (B, 3, H, W) -> same."""
    return torch.einsum("dc,bchw->bdhw", color_matrix(t.device).to(t.dtype), t)


def decorrelate(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`recorrelate`: (B, 3, H, W) RGB logits -> decorrelated colour space."""
    inv = torch.linalg.inv(color_matrix(x.device).double()).to(x.dtype)
    return torch.einsum("dc,bchw->bdhw", inv, x)


def frequencies(size: int, device: torch.device | None = None) -> torch.Tensor:
    """(S, S//2+1) radial frequency (cycles per pixel) of each coefficient of a real 2-D FFT."""
    fy = torch.fft.fftfreq(size, device=device).view(-1, 1)
    fx = torch.fft.rfftfreq(size, device=device).view(1, -1)
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(size: int, decay_power: float, device: torch.device | None = None) -> torch.Tensor:
    """(S, S//2+1) Lucid's 1/f scale: ``1 / max(f, 1/S) ** decay_power`` (natural images fall off as 1/f)."""
    return 1.0 / frequencies(size, device).clamp_min(1.0 / size) ** decay_power


def power_law_magnitude(size: int, device: torch.device | None = None) -> torch.Tensor:
    """(3, S, S//2+1) MACO's fallback magnitude without real images: 1/f in every colour channel, scaled so
    that a random-phase picture has unit std in the decorrelated space (a fixed draw, deterministic)."""
    mag = spectrum_scale(size, 1.0).expand(3, -1, -1).clone()
    phase = torch.randn(mag.shape, generator=torch.Generator().manual_seed(0))
    t = torch.fft.irfft2(torch.polar(mag, phase), s=(size, size))
    mag = mag / t.std().clamp_min(1e-8)
    return mag.to(device) if device is not None else mag


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit std over each picture's elements: (B, ...) -> (B, ...)."""
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, *([1] * (x.dim() - 1)))
    std = flat.std(1).view(-1, *([1] * (x.dim() - 1)))
    return (x - mean) / (std + 1e-4)


class FourierParam:
    """Lucid's FFT parametrization (``fft_image``): state (B, 3, S, S//2+1, 2) real/imag coefficients;
    ``rgb = sigmoid(C . irfft2(scale * spectrum) / 4)`` with ``scale`` = 1/f^decay_power."""

    name = "fourier"

    def __init__(self, size: int, decay_power: float = 1.0) -> None:
        self.size, self.decay_power = size, decay_power
        self._scale: torch.Tensor | None = None

    def state_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size // 2 + 1, 2)

    def scale(self, device: torch.device) -> torch.Tensor:
        if self._scale is None or self._scale.device != device:
            self._scale = spectrum_scale(self.size, self.decay_power, device)
        return self._scale

    def random_state(self, gens: list[torch.Generator], std: float) -> torch.Tensor:
        """(B, *S) Lucid's start: N(0, std^2) coefficients, each chain from its own generator."""
        shape = self.state_shape()
        return std * torch.stack([torch.randn(shape, generator=g, device=g.device) for g in gens])

    def image(self, state: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S//2+1, 2) -> (B, 3, S, S) rgb01."""
        spec = torch.view_as_complex(state.float().contiguous()) * self.scale(state.device)
        t = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho") / LUCID_MAGIC
        return torch.sigmoid(recorrelate(t))

    def from_image(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) rgb01 -> the state whose picture it is (pixels clamped to [0.02, 0.98])."""
        z = torch.logit(rgb01.float().clamp(EDGE_EPS, 1 - EDGE_EPS))
        t = decorrelate(z) * LUCID_MAGIC
        spec = torch.fft.rfft2(t, norm="ortho") / self.scale(rgb01.device)
        return torch.view_as_real(spec).contiguous()


class PhaseParam:
    """MACO's phase-only parametrization (Fel et al. 2023, Sec. 3: ``x = F^-1(r e^{i phi})``, r fixed):
    state = phase (B, 3, S, S//2+1); ``rgb = sigmoid(C . irfft2(r * exp(i std(phase))))`` with the phase
    standardized per picture (as Horama does) and r in the natural images' own scale (the decorrelated
    logits of :func:`mean_amplitude_spectrum`), so contrast and colour stay in the images' range."""

    name = "maco"

    def __init__(self, magnitude: torch.Tensor) -> None:
        self.magnitude = magnitude  # (3, S, S//2+1)
        self.size = magnitude.shape[1]

    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.magnitude.shape)

    def random_state(self, gens: list[torch.Generator]) -> torch.Tensor:
        """(B, *S) MACO's start: a N(0, 1) random phase per chain."""
        return torch.stack([torch.randn(self.state_shape(), generator=g, device=g.device) for g in gens])

    def image(self, state: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S//2+1) phase -> (B, 3, S, S) rgb01."""
        phase = _standardize(state.float())
        mag = self.magnitude.to(state.device)
        spec = torch.polar(mag.expand_as(phase).contiguous(), phase)
        t = torch.fft.irfft2(spec, s=(self.size, self.size))
        return torch.sigmoid(recorrelate(t))


def mean_amplitude_spectrum(images: torch.Tensor, size: int, batch: int = 256) -> torch.Tensor:
    """(3, S, S//2+1) the mean |FFT| of natural images in the space MACO draws in: decorrelated logits.

    images: (N, 3, H, W) rgb01, fitted to S x S (bilinear); each image becomes ``C^-1 logit(x)`` (pixels
    clamped to [0.02, 0.98], as ``FourierParam.from_image``) before its real 2-D FFT, so a picture drawn
    with this magnitude has the images' contrast and colour spread once recorrelated and squashed."""
    total = torch.zeros(3, size, size // 2 + 1, dtype=torch.float64)
    n = images.shape[0]
    for i in range(0, n, batch):
        x = images[i : i + batch].float().cpu()
        if x.shape[-1] != size or x.shape[-2] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        t = decorrelate(torch.logit(x.clamp(EDGE_EPS, 1 - EDGE_EPS)))
        total += torch.fft.rfft2(t).abs().sum(0).double()
    mag = (total / max(n, 1)).float()
    if not torch.isfinite(mag).all() or float(mag.sum()) <= 0:
        return power_law_magnitude(size)
    return mag
