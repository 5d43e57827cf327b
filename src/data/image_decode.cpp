#include "data/image_decode.h"

namespace flame::data {

torch::Tensor decode_image(std::string_view bytes, const std::string& name) {
  torch::Tensor image;
  decode_image_pixels(bytes, name, [&](int64_t height, int64_t width) {
    image = torch::empty({height, width, 3}, torch::kUInt8);
    return image.data_ptr<uint8_t>();
  });
  return image;
}

}  // namespace flame::data
