// A TLS upstream for one WebSocket session that sends a TLS 1.3 NewSessionTicket when told to,
// long after the handshake (no Python or Node TLS server can be made to). The e2e test of the
// socket handed from a pool to a tunnel uses it: the ticket must not reach the pool's session
// slot once the pool is gone (tests/e2e/test_tls.py, under ASan in CI).
//
//   tls_ticket_upstream CERT KEY
// Prints "PORT n", accepts one connection, completes TLS, reads a request head, answers 101,
// then reads commands from stdin: "ticket" sends a new session ticket followed by a WebSocket
// text frame "after-ticket"; end of input exits.
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

namespace {

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "tls_ticket_upstream: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) die("usage: tls_ticket_upstream CERT KEY");
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1)
    die("cannot load the certificate and key");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);

  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(lfd, 4) != 0 || getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    die("cannot listen");
  printf("PORT %d\n", ntohs(addr.sin_port));
  fflush(stdout);

  int fd = accept(lfd, nullptr, nullptr);
  if (fd < 0) die("accept");
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) die("TLS handshake");
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) die("reading the request");
    head.append(buf, static_cast<size_t>(n));
  }
  const std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  if (SSL_write(ssl, response.data(), static_cast<int>(response.size())) <= 0) die("101");
  printf("UPGRADED\n");
  fflush(stdout);

  std::string command;
  while (std::getline(std::cin, command)) {
    if (command != "ticket") continue;
    if (SSL_new_session_ticket(ssl) != 1) die("SSL_new_session_ticket");
    const char frame[] =
        "\x81\x0c"
        "after-ticket";
    if (SSL_write(ssl, frame, sizeof frame - 1) <= 0) die("writing the frame");  // ticket first
    printf("SENT\n");
    fflush(stdout);
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
  close(lfd);
  SSL_CTX_free(ctx);
  return 0;
}
