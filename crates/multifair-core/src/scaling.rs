//! Gradient scaling without hooks (docs/algorithm.md, "Gradient scaling"): `z * w + z.detach() * (1 - w)` has the value of
//! `z` and passes `w * dL/dz` back into whatever produced `z`. Applied to a modality's features
//! it scales that encoder's gradient, per sample, within the one backward pass.

use burn::tensor::Tensor;

/// `z` [B, d] with its backward gradient multiplied by `w` [B, 1] (no gradient through `w`).
pub fn scale_gradient(z: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    let w = w.detach();
    let keep = w.clone().neg().add_scalar(1.0);
    z.clone() * w + z.detach() * keep
}
