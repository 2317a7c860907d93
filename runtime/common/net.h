// Addresses of this host for kolo's own sockets (the TCP transport and the
// networked doorbells), and how they are written in messages.
#ifndef KOLO_RUNTIME_COMMON_NET_H_
#define KOLO_RUNTIME_COMMON_NET_H_

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kolo {

// At most this many addresses per rank are published.
inline constexpr int kMaxPublishedAddresses = 8;

// This host's IPv4 addresses (network byte order) that peers on other hosts
// may reach: up, not loopback, and only those of interface `iface` when it
// is not empty. At most kMaxPublishedAddresses.
std::vector<uint32_t> LocalIpv4Addresses(const std::string& iface);

// "a.b.c.d:port" for logs and errors.
std::string FormatAddress(const sockaddr_in& address);
std::string FormatAddress(uint32_t address, uint16_t port);

}  // namespace kolo

#endif  // KOLO_RUNTIME_COMMON_NET_H_
