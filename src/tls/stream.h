// A TLS stream for the proxy's inspected connections: OpenSSL reads and
// writes the non-blocking socket itself (read-ahead, 64 KiB at a time), and
// the event loop is asked to wait only when OpenSSL says it must. Asio's own
// ssl::stream copies every record through a memory BIO pair and runs a chain
// of handlers per 16 KiB record; for bulk transfers that was most of the
// proxy's time.
//
// Meets Asio's AsyncReadStream and AsyncWriteStream, so Beast's HTTP reads
// and writes work on it. One thread (the proxy's) drives it; a read and a
// write may be pending at once (OpenSSL allows interleaving them on a
// non-blocking socket).
//
// Included by src/net/proxy.cc only (Asio is slow to compile).
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl/error.hpp>
#include <memory>

namespace airlock::tls {

class Stream {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;
  enum class Role { Client, Server };

  // `sock` must outlive the stream; closing it ends every pending operation.
  Stream(socket_type& sock, SSL_CTX* ctx) : sock_(sock), ssl_(SSL_new(ctx), SSL_free) {
    if (!ssl_) throw std::bad_alloc();
    sock_.non_blocking(true);
    SSL_set_fd(ssl_.get(), static_cast<int>(sock_.native_handle()));
    SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }

  SSL* native_handle() { return ssl_.get(); }
  executor_type get_executor() { return sock_.get_executor(); }

  template <class Token>
  auto async_handshake(Role role, Token&& token) {
    if (role == Role::Server) SSL_set_accept_state(ssl_.get());
    else SSL_set_connect_state(ssl_.get());
    return run<void(boost::system::error_code)>(std::forward<Token>(token), [this](size_t&) {
      return SSL_do_handshake(ssl_.get());
    });
  }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    auto b = first(buffers);
    return run<void(boost::system::error_code, size_t)>(std::forward<Token>(token), [this, b](size_t& n) {
      if (b.size() == 0) return 1;
      return SSL_read_ex(ssl_.get(), b.data(), b.size(), &n);
    });
  }

  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    auto b = first(buffers);
    return run<void(boost::system::error_code, size_t)>(std::forward<Token>(token), [this, b](size_t& n) {
      if (b.size() == 0) return 1;
      return SSL_write_ex(ssl_.get(), b.data(), b.size(), &n);
    });
  }

 private:
  template <class Buffers>
  static auto first(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it)
      if (boost::asio::buffer(*it).size() > 0) return boost::asio::buffer(*it);
    return boost::asio::buffer(*boost::asio::buffer_sequence_begin(buffers));
  }

  // What an OpenSSL call's failure means: wait for the socket, or an error.
  // 0: done; 1: wait to read; 2: wait to write; else the error in `ec`.
  int classify(int rc, boost::system::error_code& ec) {
    int e = SSL_get_error(ssl_.get(), rc);
    if (e == SSL_ERROR_WANT_READ) return 1;
    if (e == SSL_ERROR_WANT_WRITE) return 2;
    if (e == SSL_ERROR_ZERO_RETURN) {
      ec = boost::asio::error::eof;
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
      ec = errno != 0 ? boost::system::error_code(errno, boost::system::system_category())
                      : boost::system::error_code(boost::asio::ssl::error::stream_truncated);
    } else {
      unsigned long code = ERR_get_error();
      if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        ec = boost::asio::ssl::error::stream_truncated;
      else
        ec = boost::system::error_code(static_cast<int>(code ? code : 1), boost::asio::error::get_ssl_category());
    }
    ERR_clear_error();
    return 3;
  }

  // Tries `op` now; on WANT_READ/WANT_WRITE waits for the socket and tries
  // again. Completion always goes through the executor (never inline from
  // the initiating call).
  template <class Signature, class Token, class Op>
  auto run(Token&& token, Op op) {
    return boost::asio::async_compose<Token, Signature>(
        [this, op, started = false](auto& self, boost::system::error_code wait_ec = {}) mutable {
          if (wait_ec) return finish(self, wait_ec, 0);
          size_t n = 0;
          errno = 0;
          ERR_clear_error();
          int rc = op(n);
          boost::system::error_code ec;
          int what = rc == 1 ? 0 : classify(rc, ec);
          bool first_call = !started;
          started = true;
          if (what == 1) return sock_.async_wait(socket_type::wait_read, std::move(self));
          if (what == 2) return sock_.async_wait(socket_type::wait_write, std::move(self));
          if (first_call) {
            // Finished without waiting: complete from the executor.
            return boost::asio::post(sock_.get_executor(),
                                     [self = std::move(self), ec, n]() mutable { finish(self, ec, n); });
          }
          finish(self, ec, n);
        },
        token, sock_);
  }

  template <class Self>
  static void finish(Self& self, boost::system::error_code ec, size_t n) {
    complete(self, ec, n, 0);
  }

  // Handshakes complete with (ec), reads and writes with (ec, n).
  template <class Self>
  static auto complete(Self& self, boost::system::error_code ec, size_t n, int)
      -> decltype(self.complete(ec, n), void()) {
    self.complete(ec, n);
  }
  template <class Self>
  static auto complete(Self& self, boost::system::error_code ec, size_t, long) -> decltype(self.complete(ec), void()) {
    self.complete(ec);
  }

  socket_type& sock_;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl_;
};

}  // namespace airlock::tls
