// Builds torch.save pickles by hand (protocol 2 opcodes), so the state_dict
// reader is tested on exactly the bytes a test needs, valid or hostile,
// without Python.
#ifndef KOLO_TESTS_CHEXNET_PICKLE_FIXTURE_H_
#define KOLO_TESTS_CHEXNET_PICKLE_FIXTURE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kolo::chexnet::testing {

// `v` as `bytes` little-endian bytes.
inline std::string Le(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out += static_cast<char>(v >> (8 * i));
  return out;
}
inline std::string Str(const std::string& text) {  // BINUNICODE
  return "X" + Le(text.size(), 4) + text;
}
inline std::string Int(int64_t v) {  // LONG1 with 8 bytes
  return "\x8a\x08" + Le(static_cast<uint64_t>(v), 8);
}
inline std::string Ints(const std::vector<int64_t>& values) {  // a tuple
  std::string out = "(";
  for (int64_t v : values) out += Int(v);
  return out + "t";
}

// A persistent id for a float storage; legacy ids have a sixth element.
inline std::string Storage(const std::string& key, int64_t numel, bool legacy) {
  return "(" + Str("storage") + "ctorch\nFloatStorage\n" + Str(key) +
         Str("cpu") + Int(numel) + (legacy ? "N" : "") + "tQ";
}
inline std::string Tensor(const std::string& storage, int64_t offset,
                          const std::vector<int64_t>& sizes,
                          const std::vector<int64_t>& strides) {
  return "ctorch._utils\n_rebuild_tensor_v2\n(" + storage + Int(offset) +
         Ints(sizes) + Ints(strides) +
         "\x89"
         "ccollections\nOrderedDict\n)RtR";
}
// OrderedDict([(name, tensor), ...]) as torch.save writes it.
inline std::string OrderedDict(
    const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out = "ccollections\nOrderedDict\n)R(";
  for (const auto& [name, tensor] : entries) out += Str(name) + tensor;
  return out + "u";
}
// A whole pickle holding that state_dict.
inline std::string StateDictPickle(
    const std::vector<std::pair<std::string, std::string>>& entries) {
  return "\x80\x02" + OrderedDict(entries) + ".";
}

// Magic number, protocol version 1001 and an empty system info dict.
inline std::string LegacyHeader() {
  const std::string magic(
      "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
  const std::string protocol("\x80\x02M\xe9\x03.", 6);
  const std::string sys_info("\x80\x02}.", 4);
  return magic + protocol + sys_info;
}
// The legacy format's list of storage keys.
inline std::string KeyList(const std::vector<std::string>& keys) {
  std::string out = "\x80\x02](";
  for (const std::string& key : keys) out += Str(key);
  return out + "e.";
}
// A legacy storage's element count and elements.
inline std::string Floats(const std::vector<float>& values) {
  return Le(values.size(), 8) +
         std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
}

}  // namespace kolo::chexnet::testing

#endif  // KOLO_TESTS_CHEXNET_PICKLE_FIXTURE_H_
