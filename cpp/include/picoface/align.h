// Face alignment: a similarity transform from detected landmarks to a template, then a
// bilinear warp of each face into a small crop.
#pragma once

#include <cstdint>

#include "picoface/image.h"

namespace picoface {

// The 112x112 5-point template of ArcFace-style recognisers (eye centres, nose tip, mouth
// corners; figures from the InsightFace alignment used to train ArcFace).
extern const float kArcFaceTemplate112[10];

// Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
// `src` points onto `dst` points, by Umeyama's closed form (IEEE TPAMI 1991). Writes the 2x3
// row-major matrix M with dst ~= M * [src; 1]. Throws Error(kInvalidArgument) on non-finite
// or degenerate (all coincident) points.
void estimate_similarity(const float* src, const float* dst, int num_points, float m[6]);

// Inverse of an invertible 2x3 affine map; throws Error(kInvalidArgument) if singular.
void invert_affine(const float m[6], float inv[6]);

// Warps `num_faces` faces into out[num_faces][size_h][size_w][channels]: face i's landmarks
// (num_points x,y pairs) are mapped onto `tmpl`, given in a tmpl_w x tmpl_h frame and scaled
// to the crop size. Pixels from outside the image take `border`.
void align_faces(const ImageView& image, const float* landmarks, int num_faces, int num_points,
                 const float* tmpl, int tmpl_w, int tmpl_h, int size_w, int size_h,
                 std::uint8_t border, std::uint8_t* out);

}  // namespace picoface
