// Writes PNG test fixtures of any colour type and bit depth with libspng,
// independently of the library's own 8-bit encoder.
#ifndef KOLO_TESTS_CHEXNET_PNG_FIXTURE_H_
#define KOLO_TESTS_CHEXNET_PNG_FIXTURE_H_

#include <spng.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace kolo::chexnet::testing {

// `pixels` holds rows of samples in the PNG's own layout (16-bit samples in
// host byte order). `palette` holds RGB triples for indexed images.
inline std::string EncodeFixture(int width, int height, uint8_t color_type,
                                 uint8_t bit_depth,
                                 const std::vector<uint8_t>& pixels,
                                 const std::vector<uint8_t>& palette = {}) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr = {};
  ihdr.width = width;
  ihdr.height = height;
  ihdr.color_type = color_type;
  ihdr.bit_depth = bit_depth;
  spng_set_ihdr(ctx, &ihdr);
  if (!palette.empty()) {
    spng_plte plte = {};
    plte.n_entries = static_cast<uint32_t>(palette.size() / 3);
    for (uint32_t i = 0; i < plte.n_entries; ++i) {
      plte.entries[i].red = palette[3 * i];
      plte.entries[i].green = palette[3 * i + 1];
      plte.entries[i].blue = palette[3 * i + 2];
    }
    spng_set_plte(ctx, &plte);
  }
  std::string png;
  if (spng_encode_image(ctx, pixels.data(), pixels.size(), SPNG_FMT_PNG,
                        SPNG_ENCODE_FINALIZE) == 0) {
    size_t length = 0;
    int error = 0;
    void* buffer = spng_get_png_buffer(ctx, &length, &error);
    png.assign(static_cast<const char*>(buffer), length);
    std::free(buffer);
  }
  spng_ctx_free(ctx);
  return png;
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace kolo::chexnet::testing

#endif  // KOLO_TESTS_CHEXNET_PNG_FIXTURE_H_
