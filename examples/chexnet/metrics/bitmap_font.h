// A 5x7 bitmap font for labelling plots without a font library: upper-case
// letters (lower case is drawn as upper case), digits, space and
// . , _ - : = ( ) / %. Any other character is drawn as '?'.
#ifndef KOLO_EXAMPLES_CHEXNET_METRICS_BITMAP_FONT_H_
#define KOLO_EXAMPLES_CHEXNET_METRICS_BITMAP_FONT_H_

#include "absl/strings/string_view.h"

namespace kolo::chexnet {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kGlyphAdvance = 6;  // Glyph plus one column of space.

// Whether pixel (x, y) of the glyph of `c` is ink; (0, 0) is the top left.
// REQUIRES: 0 <= x < kGlyphWidth, 0 <= y < kGlyphHeight.
bool GlyphPixel(char c, int x, int y);

// Width in pixels of `text` drawn at `scale` (no trailing space).
int TextWidth(absl::string_view text, int scale);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_METRICS_BITMAP_FONT_H_
