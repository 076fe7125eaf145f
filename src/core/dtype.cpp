#include "core/dtype.h"

#include <array>
#include <cctype>

#include "core/error.h"

namespace squish {

namespace {
struct Entry {
  uint32_t id;
  DTypeTraits traits;
};
constexpr std::array<Entry, 22> kTypes = {{
    {0, {"F32", 1, 4}},         {1, {"F16", 1, 2}},       {2, {"Q4_0", 32, 18}},
    {3, {"Q4_1", 32, 20}},      {6, {"Q5_0", 32, 22}},    {7, {"Q5_1", 32, 24}},
    {8, {"Q8_0", 32, 34}},      {9, {"Q8_1", 32, 36}},    {10, {"Q2_K", 256, 84}},
    {11, {"Q3_K", 256, 110}},   {12, {"Q4_K", 256, 144}}, {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},   {15, {"Q8_K", 256, 292}}, {20, {"IQ4_NL", 32, 18}},
    {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},       {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},        {27, {"I64", 1, 8}},      {28, {"F64", 1, 8}},
    {30, {"BF16", 1, 2}},
}};
}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t id) {
  for (const Entry& e : kTypes) {
    if (e.id == id) return e.traits;
  }
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  for (const Entry& e : kTypes) {
    if (e.id == static_cast<uint32_t>(t)) return e.traits;
  }
  fail("internal: unknown dtype id {}", static_cast<uint32_t>(t));
}

std::optional<DType> parse_dtype(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Entry& e : kTypes) {
    if (upper == e.traits.name) return static_cast<DType>(e.id);
  }
  return std::nullopt;
}

}  // namespace squish
