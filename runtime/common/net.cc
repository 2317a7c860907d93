// Implementation of the address helpers.
#include "runtime/common/net.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

#include "absl/strings/str_cat.h"

namespace kolo {

std::vector<uint32_t> LocalIpv4Addresses(const std::string& iface) {
  std::vector<uint32_t> addresses;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return addresses;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    if (!(a->ifa_flags & IFF_UP) || (a->ifa_flags & IFF_LOOPBACK)) continue;
    if (!iface.empty() && iface != a->ifa_name) continue;
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    if (addresses.size() < kMaxPublishedAddresses) {
      addresses.push_back(in->sin_addr.s_addr);
    }
  }
  freeifaddrs(list);
  return addresses;
}

std::string FormatAddress(uint32_t address, uint16_t port) {
  char text[INET_ADDRSTRLEN] = {};
  in_addr in{};
  in.s_addr = address;
  inet_ntop(AF_INET, &in, text, sizeof(text));
  return absl::StrCat(text, ":", port);
}

std::string FormatAddress(const sockaddr_in& address) {
  return FormatAddress(address.sin_addr.s_addr, ntohs(address.sin_port));
}

}  // namespace kolo
