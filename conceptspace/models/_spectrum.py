"""The spectrum-matched control: every weight matrix keeps its singular values, its singular vectors are random.

Why a second architecture control: the untrained twin is drawn from the initialisation (std 0.02 for Llama-type
models), so its blocks are close to the identity and its residual stream stays small. A claim can then "beat the
twin" only because the twin barely transforms anything. This control keeps what training put into the *scale*
of every matrix (its spectrum, hence its Frobenius and operator norms and its condition number) and of every
gain and bias (the multiset of entries), and throws away what training put into the *directions*: how each
matrix's singular vectors align with the token vectors and with the neighbouring matrices. Whatever it still
shows is a property of the architecture plus the weight statistics, not of learned structure. On SmolLM2-135M
the median per-token norm of the residual stream after block 15 is 172 trained, 22 in the untrained twin and
564 in this control (tests/integration/test_spectrum_control_real.py).

For a weight ``W = U S V^T`` (m x n, r = min(m, n)) the control is ``U' S V'^T`` where ``U'`` (m x r) and ``V'``
(n x r) are the first r columns of Haar-distributed orthogonal matrices: the Q factor of a thin QR of a Gaussian
matrix, with ``diag(R) > 0`` (the sign fix that makes the distribution exactly Haar: without it QR's sign
convention biases it). Only the singular values of ``W`` are computed (``svdvals``), and only the thin factor
(m x r, by Cholesky QR when it is tall): SmolLM2's 49152 x 576 embedding costs about 5 s of one core, the
whole model about 36 s of one core. Parameters of one dimension (norm gains, biases) have their entries
permuted. Parameters with more than two dimensions are treated as ``(shape[0], -1)`` matrices.

Every parameter draws from its own generator, seeded from the control's seed and the parameter's name, so the
result does not depend on the iteration order and never touches torch's global random state. The arithmetic is
float64 on the parameter's device (the draws on the CPU, so a seed gives the same matrices everywhere up to the
rounding of the device's linear algebra).
"""

from __future__ import annotations

import hashlib

import torch

#: Names the procedure inside the model identity's cache key: change it if the construction ever changes, so
#: activations cached for an older spectrum-matched control are never served for a new one.
SPECTRUM_METHOD = "haar-singular-vectors/permuted-vectors/v1"


def parameter_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator for one parameter, seeded from (control seed, parameter name) through sha256."""
    digest = hashlib.sha256(f"{SPECTRUM_METHOD}|{seed}|{name}".encode()).digest()
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return generator


def haar_columns(rows: int, cols: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``cols`` orthonormal columns in R^rows (cols <= rows), the first columns of a Haar orthogonal matrix.

    The Q of ``G = Q R`` with ``diag(R) > 0`` for a Gaussian (rows x cols) ``G`` is Haar distributed
    (Mezzadri 2007), and that Q is unique, so two algorithms give the same matrix up to rounding. A tall ``G``
    (rows >= 2 cols) is well conditioned (condition number about (sqrt(rows) + sqrt(cols)) / (sqrt(rows) -
    sqrt(cols)) <= 6), so ``Q = G R^{-1}`` with R from the Cholesky factor of ``G^T G`` is orthonormal to
    ~1e-14 and costs half a Householder QR (SmolLM2's 49152 x 576 embedding: 5 s instead of 8 s on one core).
    Otherwise, or if Cholesky ever fails, Householder QR with the sign fix. float64.
    """
    if cols > rows:
        raise ValueError(f"haar_columns needs cols <= rows; got {rows} x {cols}")
    gaussian = torch.randn(rows, cols, generator=generator, dtype=torch.float64).to(device)
    if rows >= 2 * cols:
        lower, info = torch.linalg.cholesky_ex(gaussian.T @ gaussian)
        if int(info) == 0:
            return torch.linalg.solve_triangular(lower.T, gaussian, upper=True, left=False)
    q, r = torch.linalg.qr(gaussian, mode="reduced")
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


def spectrum_matched_matrix(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``U' diag(s) V'^T`` with the singular values ``s`` of ``weight`` and Haar ``U'``, ``V'`` (float64).

    Written to hold at most three float64 copies of the matrix at once (the embedding of a large vocabulary
    is the one that counts): the float64 input is dropped once its singular values are known.
    """
    rows, cols = weight.shape
    rank = min(rows, cols)
    singular_values = torch.linalg.svdvals(weight.detach().to(torch.float64))
    left = haar_columns(rows, rank, generator, weight.device)
    right = haar_columns(cols, rank, generator, weight.device)
    return left.mul_(singular_values) @ right.T


def permuted_vector(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The entries of a 1-D parameter in a uniformly random order."""
    order = torch.randperm(weight.numel(), generator=generator).to(weight.device)
    return weight.detach()[order]


def randomize_singular_vectors_(module: torch.nn.Module, seed: int) -> list[str]:
    """Replace, in place, every parameter of ``module`` by its spectrum-matched (or permuted) version.

    Tied parameters are one ``Parameter`` object, listed once by ``named_parameters``, so they are transformed
    once and stay tied. Returns the names of the parameters changed (0-D parameters are left alone: a single
    value has nothing to permute).
    """
    changed: list[str] = []
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.dim() == 0:
                continue
            generator = parameter_generator(seed, name)
            if parameter.dim() == 1:
                new = permuted_vector(parameter, generator)
            else:
                flat = parameter.reshape(parameter.shape[0], -1)
                new = spectrum_matched_matrix(flat, generator).reshape(parameter.shape)
            parameter.copy_(new.to(parameter.dtype))
            changed.append(name)
    return changed
