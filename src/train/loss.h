// FLAME's multi-positive contrastive losses. Every image has K text embeddings
// (one per prompt facet) of its own caption; each of them is a positive for the
// image, and the texts of the other images are negatives.
//
// Shapes: image [N, D] and text [N, K, D], both L2-normalised; text (j, k) is
// facet k of image j's caption. The losses take the FULL batch: in data-parallel
// training the trainer gathers features from all ranks before calling them.
// Logits are computed in fp32 whatever the input dtype; gradients flow back to
// the inputs in their own dtype.
#pragma once

#include <torch/torch.h>

namespace flame::train {

// Multi-positive InfoNCE. With logits z_ijk = scale <x_i, t_jk>:
//   text-to-image: each text (j, k) is a query against the N images; its
//     positive is image j.              L_t2i = mean over (j, k) of CE.
//   image-to-text: for each facet k, each image i is a query against the N
//     texts of facet k; its positive is text (i, k).  L_i2t = mean over (i, k).
//   loss = (L_t2i + L_i2t) / 2.
// With K = 1 this is the standard CLIP loss. scale: scalar, already exp'd.
torch::Tensor multi_positive_infonce(const torch::Tensor& image, const torch::Tensor& text,
                                     const torch::Tensor& scale);

// Multi-positive sigmoid loss (SigLIP). With z_ijk = scale <x_i, t_jk> + bias
// and label y_ij = +1 if i == j else -1, every (image, text) pair is an
// independent binary decision:
//   loss = -(1 / (N K)) sum_{i, j, k} log sigmoid(y_ij z_ijk).
// The sum is normalised by the number of texts N K, so K = 1 gives SigLIP's
// -(1/N) sum_ij (its "per image" normalisation), and adding facets does not
// scale the loss with K. scale (already exp'd) and bias are scalars.
torch::Tensor multi_positive_sigmoid(const torch::Tensor& image, const torch::Tensor& text,
                                     const torch::Tensor& scale, const torch::Tensor& bias);

}  // namespace flame::train
