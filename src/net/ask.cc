#include "net/ask.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "util/fd.h"
#include "util/log.h"
#include "util/sys.h"

namespace airlock::net {
namespace {

constexpr int kTtyTimeoutSeconds = 30;

class TtyAsker : public Asker, public std::enable_shared_from_this<TtyAsker> {
 public:
  explicit TtyAsker(std::function<void(bool)> pause) : pause_(std::move(pause)) {}
  ~TtyAsker() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.detach();  // may sit in a prompt; the process is ending
  }

  void ask(const Question& q, std::function<void(Answer)> reply) override {
    std::lock_guard<std::mutex> g(mu_);
    queue_.emplace_back(q, std::move(reply));
    if (!thread_.joinable()) thread_ = std::thread([self = shared_from_this()] { self->loop(); });
    cv_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::pair<Question, std::function<void(Answer)>> item;
      {
        std::unique_lock<std::mutex> g(mu_);
        cv_.wait(g, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      item.second(prompt(item.first));
    }
  }

  Answer prompt(const Question& q) {
    UniqueFd tty(::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!tty) return Answer::Deny;  // nobody to ask
    pause_(true);
    struct termios saved {};
    bool have_termios = ::tcgetattr(tty.get(), &saved) == 0;
    if (have_termios) {
      struct termios raw = saved;
      raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
      raw.c_cc[VMIN] = 1;
      raw.c_cc[VTIME] = 0;
      (void)::tcsetattr(tty.get(), TCSANOW, &raw);
    }
    std::string text = fmt::format(
        "\r\nairlock: the command wants to reach {}:{} ({}), which no rule allows.\r\n"
        "  [o]nce  [r] for this run  [a]lways (saved to your settings)  [d]eny   (denied in {} s) ? ",
        q.host, q.port, q.client, kTtyTimeoutSeconds);
    (void)sys::write_all(tty.get(), text.data(), text.size());
    Answer a = Answer::Deny;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTtyTimeoutSeconds);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) break;
      struct pollfd p {tty.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char c;
      if (::read(tty.get(), &c, 1) != 1) break;
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (c == 'o' || c == 'y') a = Answer::Once;
      else if (c == 'r') a = Answer::Run;
      else if (c == 'a') a = Answer::Always;
      else if (c == 'd' || c == 'n' || c == '\r' || c == '\n' || c == 3 || c == 27) a = Answer::Deny;
      else continue;
      break;
    }
    const char* said = a == Answer::Once ? "allowed once" : a == Answer::Run ? "allowed for this run"
                       : a == Answer::Always ? "allowed always" : "denied";
    std::string end = fmt::format("{}\r\n", said);
    (void)sys::write_all(tty.get(), end.data(), end.size());
    if (have_termios) (void)::tcsetattr(tty.get(), TCSANOW, &saved);
    pause_(false);
    return a;
  }

  std::function<void(bool)> pause_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Question, std::function<void(Answer)>>> queue_;
  std::thread thread_;
  bool stop_ = false;
};

class ControlAsker : public Asker {
 public:
  ControlAsker(int fd, std::string id, std::function<void(const std::string&)> on_config)
      : fd_(fd), id_(std::move(id)), on_config_(std::move(on_config)) {}

  void ask(const Question& q, std::function<void(Answer)> reply) override {
    nlohmann::json j = {{"type", "ask"}, {"id", q.id}, {"host", q.host}, {"port", q.port},
                        {"client", q.client}, {"sandbox", id_}};
    std::string line = j.dump() + "\n";
    std::lock_guard<std::mutex> g(mu_);
    if (::send(fd_, line.data(), line.size(), MSG_NOSIGNAL) < 0 &&
        !sys::write_all(fd_, line.data(), line.size())) {
      reply(Answer::Deny);  // a one-way (srt-style) descriptor: nobody can answer
      return;
    }
    waiting_[q.id] = std::move(reply);
  }

  void read_loop() {
    std::string buf;
    char chunk[4096];
    for (;;) {
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        handle(line);
      }
      if (buf.size() > (1 << 20)) {
        log::line(fmt::format("control fd {}: a line longer than 1 MiB; ignored", fd_));
        buf.clear();
      }
    }
    // No one left to answer: what is pending is refused.
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [id, reply] : waiting_) reply(Answer::Deny);
    waiting_.clear();
  }

 private:
  void handle(const std::string& line) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) return;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      log::line(fmt::format("control fd {}: not a JSON object; ignored", fd_));
      return;
    }
    if (j.value("type", "") != "answer") {
      on_config_(line);
      return;
    }
    if (!j.contains("id") || !j["id"].is_number_unsigned() || !j.contains("decision") || !j["decision"].is_string()) {
      log::line(fmt::format("control fd {}: an answer needs \"id\" and \"decision\"; ignored", fd_));
      return;
    }
    std::string d = j["decision"].get<std::string>();
    Answer a;
    if (d == "once") a = Answer::Once;
    else if (d == "run") a = Answer::Run;
    else if (d == "always") a = Answer::Always;
    else if (d == "deny") a = Answer::Deny;
    else {
      log::line(fmt::format("control fd {}: decision '{}' is not once, run, always or deny; ignored", fd_, d));
      return;
    }
    std::function<void(Answer)> reply;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = waiting_.find(j["id"].get<uint64_t>());
      if (it == waiting_.end()) return;  // late, or never asked
      reply = std::move(it->second);
      waiting_.erase(it);
    }
    reply(a);
  }

  int fd_;
  std::string id_;
  std::function<void(const std::string&)> on_config_;
  std::mutex mu_;
  std::map<uint64_t, std::function<void(Answer)>> waiting_;
};

}  // namespace

std::shared_ptr<Asker> make_tty_asker(std::function<void(bool)> pause_input) {
  return std::make_shared<TtyAsker>(std::move(pause_input));
}

std::shared_ptr<Asker> make_control_asker(int fd, std::string sandbox_id,
                                          std::function<void(const std::string&)> on_config) {
  auto a = std::make_shared<ControlAsker>(fd, std::move(sandbox_id), std::move(on_config));
  // The reader sits in read() on a descriptor the caller owns, for as long
  // as the process lives; it keeps the asker alive with it.
  std::thread([a] { a->read_loop(); }).detach();
  return a;
}

std::string remember_in_user_settings(const std::string& file, const std::string& pattern) {
  nlohmann::json j = nlohmann::json::object();
  {
    std::ifstream in(file);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      j = nlohmann::json::parse(ss.str(), nullptr, false);
      if (j.is_discarded() || !j.is_object()) return fmt::format("{} is not a JSON object", file);
    }
  }
  auto& list = j["network"]["allowedDomains"];
  if (list.is_null()) list = nlohmann::json::array();
  if (!list.is_array()) return fmt::format("{}: network.allowedDomains is not a list", file);
  for (const auto& e : list)
    if (e == pattern) return "";
  list.push_back(pattern);
  // mkdir -p: ~/.config itself may not exist yet.
  for (size_t i = 1; i < file.size(); ++i)
    if (file[i] == '/') (void)::mkdir(file.substr(0, i).c_str(), 0700);
  std::string tmp = file + ".tmp";
  {
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    std::string text = j.dump(2) + "\n";
    if (!out || !sys::write_all(out.get(), text.data(), text.size())) return fmt::format("cannot write {}", tmp);
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) return fmt::format("cannot replace {}", file);
  return "";
}

}  // namespace airlock::net
