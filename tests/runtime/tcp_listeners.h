// For tests of the TCP transport's wire-up: this process's listening
// sockets (found in /proc, as an attacker on the host would find them with
// ss or netstat) and a plain client connection to one.
#ifndef KOLO_TESTS_RUNTIME_TCP_LISTENERS_H_
#define KOLO_TESTS_RUNTIME_TCP_LISTENERS_H_

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace kolo::testing {

struct Listener {
  uint32_t address;  // network byte order
  uint16_t port;
  bool operator<(const Listener& o) const {
    return std::tie(address, port) < std::tie(o.address, o.port);
  }
};

// This process's listening IPv4 TCP sockets (from /proc), except those in
// `known`.
inline std::vector<Listener> OwnListeners(
    const std::set<Listener>& known = {}) {
  std::set<std::string> inodes;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir)) {
      char target[256] = {};
      const std::string link = std::string("/proc/self/fd/") + entry->d_name;
      if (readlink(link.c_str(), target, sizeof(target) - 1) > 0 &&
          std::strncmp(target, "socket:[", 8) == 0) {
        inodes.insert(std::string(target + 8, std::strlen(target) - 9));
      }
    }
    closedir(dir);
  }
  std::vector<Listener> out;
  std::ifstream table("/proc/self/net/tcp");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid,
        timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >>
        retransmits >> uid >> timeout >> inode;
    if (state != "0A" || inodes.count(inode) == 0) continue;  // 0A: LISTEN
    Listener l;
    l.address =
        static_cast<uint32_t>(std::stoul(local.substr(0, 8), nullptr, 16));
    l.port = static_cast<uint16_t>(std::stoul(local.substr(9), nullptr, 16));
    if (known.count(l) == 0) out.push_back(l);
  }
  return out;
}

// A blocking connection to `l` whose sends and receives give up after 2 s;
// -1 when it cannot connect.
inline int ConnectTo(const Listener& l) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const timeval patience{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &patience, sizeof(patience));
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(l.port);
  target.sin_addr.s_addr = l.address;
  if (connect(fd, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// An impostor: connects to `l`, waits for the listener's challenge (magic,
// rank, nonce: 28 bytes) and answers it claiming rank 1 with a made-up MAC.
// Returns the connection (to keep it open), or -1.
inline int ConnectAsImpostor(const Listener& l) {
  const int fd = ConnectTo(l);
  if (fd < 0) return -1;
  char hello[28];
  recv(fd, hello, sizeof(hello), MSG_WAITALL);
  std::string answer(4 + 16 + 32, '\0');
  const uint32_t one = htonl(1);
  std::memcpy(answer.data(), &one, 4);
  send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
  return fd;
}

}  // namespace kolo::testing

#endif  // KOLO_TESTS_RUNTIME_TCP_LISTENERS_H_
