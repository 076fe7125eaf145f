// What `squish auto` is asked to fit: sizes written the way people write them ("3.9GB",
// "512MiB", "1500000") and named devices with their memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace squish {

// Bytes in "N", "N.NKB|MB|GB|TB" (powers of 1000), "N.NKiB|MiB|GiB|TiB" (powers of 1024) or
// "K|M|G" (powers of 1024, like llama.cpp). `flag` names the option in the one-line error.
uint64_t parse_byte_size(const std::string& text, const char* flag);

struct DeviceMemory {
  const char* name;
  uint64_t bytes;     // memory the device has
  const char* notes;  // what the number is
};

// Known devices; "local" (this machine's usable memory) is handled by the caller.
const std::vector<DeviceMemory>& known_devices();
// Throws a one-line error listing the names when `name` is unknown.
const DeviceMemory& find_device(const std::string& name);

}  // namespace squish
