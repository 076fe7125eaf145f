#include "auto/targets.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace squish {

uint64_t parse_byte_size(const std::string& text, const char* flag) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  const std::string number = text.substr(0, i);
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  char* end = nullptr;
  const double v = number.empty() ? -1 : std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size() || !(v >= 0)) {
    fail("{} '{}': expected a size such as 3.9GB, 512MiB or 1500000", flag, text);
  }
  double scale = 0;
  if (unit.empty() || unit == "B")
    scale = 1;
  else if (unit == "KB")
    scale = 1e3;
  else if (unit == "MB")
    scale = 1e6;
  else if (unit == "GB")
    scale = 1e9;
  else if (unit == "TB")
    scale = 1e12;
  else if (unit == "K" || unit == "KIB")
    scale = 1024.0;
  else if (unit == "M" || unit == "MIB")
    scale = 1048576.0;
  else if (unit == "G" || unit == "GIB")
    scale = 1073741824.0;
  else if (unit == "T" || unit == "TIB")
    scale = 1099511627776.0;
  else
    fail("{} '{}': unknown unit '{}' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", flag, text, unit);
  const double bytes = std::floor(v * scale);
  if (bytes < 1 || bytes > 1.8e19) fail("{} '{}': size out of range", flag, text);
  return static_cast<uint64_t>(bytes);
}

const std::vector<DeviceMemory>& known_devices() {
  constexpr uint64_t GiB = 1ull << 30;
  static const std::vector<DeviceMemory> devices = {
      {"rpi4-2gb", 2 * GiB, "Raspberry Pi 4, 2 GB RAM"},
      {"rpi4-4gb", 4 * GiB, "Raspberry Pi 4, 4 GB RAM"},
      {"rpi5-8gb", 8 * GiB, "Raspberry Pi 5, 8 GB RAM"},
      {"phone-6gb", 6 * GiB, "phone with 6 GB RAM"},
      {"phone-8gb", 8 * GiB, "phone with 8 GB RAM"},
      {"laptop-8gb", 8 * GiB, "laptop with 8 GB RAM"},
      {"laptop-16gb", 16 * GiB, "laptop with 16 GB RAM"},
      {"rtx3060-12gb", 12 * GiB, "NVIDIA RTX 3060, 12 GB VRAM"},
      {"rtx4090-24gb", 24 * GiB, "NVIDIA RTX 4090, 24 GB VRAM"},
      {"a100-40gb", 40 * GiB, "NVIDIA A100, 40 GB"},
      {"a100-80gb", 80 * GiB, "NVIDIA A100, 80 GB"},
      {"h100-80gb", 80 * GiB, "NVIDIA H100, 80 GB"},
  };
  return devices;
}

const DeviceMemory& find_device(const std::string& name) {
  std::string names;
  for (const DeviceMemory& d : known_devices()) {
    if (name == d.name) return d;
    names += (names.empty() ? "" : ", ") + std::string(d.name);
  }
  fail("--device '{}': unknown device (known: local, {})", name, names);
}

}  // namespace squish
