// Implementation of the job secret's helpers (OpenSSL's HMAC and RNG).
#include "runtime/common/job_secret.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace kolo {

StatusOr<std::string> RandomBytes(int bytes) {
  std::string out(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), bytes) != 1) {
    return absl::InternalError(
        "could not draw random bytes (OpenSSL RAND_bytes)");
  }
  return out;
}

std::string Mac(absl::string_view key, absl::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
       digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

bool MacEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace kolo
