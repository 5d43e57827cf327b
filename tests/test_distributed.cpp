// The data-parallel layer: environment parsing, the single-process identity,
// and real 2-rank jobs over Gloo. A multi-process test re-runs this binary as
// two ranks (`--gtest_filter=DistributedChild.<Name>` with FLAME_DIST_CHILD=1);
// the children save their results under a directory the parent passes, and the
// parent checks them. scripts/launch is tested on shell commands.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_helpers.h"
#include "util/distributed.h"
#include "util/error.h"

extern char** environ;

namespace flame::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- helpers

bool is_child() {
  return std::getenv("FLAME_DIST_CHILD") != nullptr;
}

// A port nobody listens on now: bind port 0 and let the kernel choose.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs DistributedChild.<name> as ranks 0..world-1 of one job, their output in
// dir/rank<i>.log, and expects every one to exit 0 within the deadline.
void run_ranks(const std::string& name, const fs::path& dir, int world = 2, int deadline_s = 30) {
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  const std::string filter = "--gtest_filter=DistributedChild." + name;
  const int port = free_port();

  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string var(*e);
      const std::string key = var.substr(0, var.find('='));
      if (key == "RANK" || key == "WORLD_SIZE" || key == "LOCAL_RANK" || key == "MASTER_ADDR" ||
          key == "MASTER_PORT" || key == "OMP_NUM_THREADS" || key.rfind("GTEST_", 0) == 0 ||
          key.rfind("FLAME_DIST_", 0) == 0)
        continue;  // GTEST_* (sharding) could make the child skip its test
      env_strings.push_back(var);
    }
    for (const std::string& var :
         {std::string("FLAME_DIST_CHILD=1"), "FLAME_DIST_OUT=" + dir.string(), "RANK=" + std::to_string(rank),
          "LOCAL_RANK=" + std::to_string(rank), "WORLD_SIZE=" + std::to_string(world),
          std::string("MASTER_ADDR=127.0.0.1"), "MASTER_PORT=" + std::to_string(port),
          std::string("OMP_NUM_THREADS=1")})
      env_strings.push_back(var);
    std::vector<char*> envp;
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> arg_strings{exe, filter};
    std::vector<char*> argv;
    for (std::string& s : arg_strings) argv.push_back(s.data());
    argv.push_back(nullptr);

    const std::string log = (dir / ("rank" + std::to_string(rank) + ".log")).string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0) << "posix_spawn failed";
    pids.push_back(pid);
  }

  std::vector<int> status(world, -1);
  int running = world;
  const auto deadline = Clock::now() + std::chrono::seconds(deadline_s);
  while (running > 0 && Clock::now() < deadline) {
    for (int r = 0; r < world; ++r) {
      if (pids[r] == 0) continue;
      int st = 0;
      if (::waitpid(pids[r], &st, WNOHANG) == pids[r]) {
        status[r] = st;
        pids[r] = 0;
        --running;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int r = 0; r < world; ++r) {
    if (pids[r] == 0) continue;
    ::kill(pids[r], SIGKILL);
    ::waitpid(pids[r], nullptr, 0);
  }
  for (int r = 0; r < world; ++r) {
    const std::string log = read_text(dir / ("rank" + std::to_string(r) + ".log"));
    EXPECT_TRUE(status[r] != -1) << "rank " << r << " still running after " << deadline_s << " s:\n" << log;
    if (status[r] == -1) continue;
    EXPECT_TRUE(WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0)
        << "rank " << r << " failed (wait status " << status[r] << "):\n"
        << log;
    // The child must have run its test rather than skipped or filtered it.
    EXPECT_NE(log.find("[       OK ] DistributedChild." + name), std::string::npos) << log;
  }
}

std::vector<torch::Tensor> load_results(const fs::path& dir, int rank) {
  std::vector<torch::Tensor> results;
  torch::load(results, (dir / ("rank" + std::to_string(rank) + ".pt")).string());
  return results;
}

void expect_equal(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what) {
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  EXPECT_EQ(actual.sizes(), expected.sizes()) << what;
  if (actual.sizes() == expected.sizes() && actual.scalar_type() == expected.scalar_type())
    EXPECT_TRUE(torch::equal(actual, expected)) << what << ":\n" << actual << "\nexpected\n" << expected;
}

// ---------------------------------------------------------------- environment

TEST(DistributedEnv, AbsentMeansSingleProcess) {
  const DistEnv env = dist_env_from_variables({});
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  EXPECT_EQ(env.master_port, 29500);
}

std::map<std::string, std::string> full_variables() {
  return {{"RANK", "3"},
          {"WORLD_SIZE", "4"},
          {"LOCAL_RANK", "1"},
          {"MASTER_ADDR", "node0.cluster"},
          {"MASTER_PORT", "12345"}};
}

TEST(DistributedEnv, FullSetIsParsed) {
  const DistEnv env = dist_env_from_variables(full_variables());
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_addr, "node0.cluster");
  EXPECT_EQ(env.master_port, 12345);
}

TEST(DistributedEnv, MissingVariableIsNamed) {
  for (const std::string name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    auto vars = full_variables();
    vars.erase(name);
    const std::string message = test::error_of([&] { dist_env_from_variables(vars); });
    EXPECT_NE(message.find(name + " not set"), std::string::npos) << name << ": " << message;
  }
}

TEST(DistributedEnv, BadValueIsNamed) {
  const std::vector<std::pair<std::string, std::string>> bad = {{"RANK", "x"},
                                                                {"RANK", "4"},
                                                                {"RANK", "-1"},
                                                                {"WORLD_SIZE", "0"},
                                                                {"WORLD_SIZE", "2x"},
                                                                {"LOCAL_RANK", "4"},
                                                                {"LOCAL_RANK", ""},
                                                                {"MASTER_ADDR", " "},
                                                                {"MASTER_PORT", "0"},
                                                                {"MASTER_PORT", "70000"},
                                                                {"MASTER_PORT", "99999999999999999999"}};
  for (const auto& [name, value] : bad) {
    auto vars = full_variables();
    vars[name] = value;
    const std::string message = test::error_of([&] { dist_env_from_variables(vars); });
    EXPECT_NE(message.find(name), std::string::npos) << name << "=" << value << ": " << message;
  }
}

TEST(DistributedEnv, ReadsTheProcessEnvironment) {
  // Children of the multi-process tests run with these set: leave them alone.
  if (is_child()) GTEST_SKIP();
  const char* names[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"};
  for (const char* name : names)
    if (std::getenv(name) != nullptr) GTEST_SKIP() << name << " is set in the test environment";
  EXPECT_EQ(dist_env_from_environment().world_size, 1);
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  EXPECT_NE(test::error_of([] { dist_env_from_environment(); }).find("LOCAL_RANK"), std::string::npos);
  ::setenv("LOCAL_RANK", "1", 1);
  ::setenv("MASTER_ADDR", "10.0.0.1", 1);
  ::setenv("MASTER_PORT", "2345", 1);
  const DistEnv env = dist_env_from_environment();
  for (const char* name : names) ::unsetenv(name);
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.world_size, 2);
  EXPECT_EQ(env.master_addr, "10.0.0.1");
  EXPECT_EQ(env.master_port, 2345);
}

// ---------------------------------------------------------------- one process

TEST(DistributedSingle, CollectivesAreTheIdentity) {
  Distributed dist = Distributed::init(DistEnv{}, torch::kCPU);
  EXPECT_EQ(dist.rank(), 0);
  EXPECT_EQ(dist.world_size(), 1);
  EXPECT_TRUE(dist.is_main());
  EXPECT_EQ(dist.backend(), "none");

  const torch::Tensor x = torch::randn({3, 4}).requires_grad_(true);
  const torch::Tensor gathered = dist.gather_rows(x);
  EXPECT_TRUE(torch::equal(gathered, x));
  gathered.sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::ones({3, 4})));

  const torch::Tensor a = torch::randn({5});
  const torch::Tensor a0 = a.clone();
  dist.all_reduce_sum_({a, torch::Tensor()});
  dist.broadcast_({a, torch::Tensor()});
  EXPECT_TRUE(torch::equal(a, a0));
  EXPECT_EQ(dist.all_gather_int64({4, -5}), (std::vector<int64_t>{4, -5}));
  EXPECT_EQ(dist.all_reduce_max(2.5), 2.5);
  EXPECT_EQ(dist.all_reduce_sum(2.5), 2.5);
  dist.barrier();

  Distributed moved = std::move(dist);
  EXPECT_EQ(moved.all_reduce_sum(1.0), 1.0);
}

TEST(DistributedSingle, RejectsBadArguments) {
  EXPECT_NE(test::error_of([] {
              Distributed::init(DistEnv{2, 2, 0, "127.0.0.1", 29500});
            }).find("rank 2"),
            std::string::npos);
  Distributed dist = Distributed::init(DistEnv{});
  EXPECT_NE(test::error_of([&] { dist.gather_rows(torch::zeros({})); }).find("gather_rows"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { dist.broadcast_({}, 1); }).find("root 1"), std::string::npos);
}

TEST(DistributedSingle, InitWithoutPeersTimesOut) {
  const auto start = Clock::now();
  const DistEnv env{0, 2, 0, "127.0.0.1", free_port()};
  const std::string message =
      test::error_of([&] { Distributed::init(env, torch::kCPU, std::chrono::seconds(1)); });
  EXPECT_NE(message.find("distributed init failed on rank 0 of 2"), std::string::npos) << message;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10)) << message;
}

// ---------------------------------------------------------------- two processes

// Values every rank (and the parent) can compute: rank r's rows and tensors.
torch::Tensor rows_of(int rank) {
  return torch::arange(6, torch::kFloat).view({3, 2}) + 100.0 * rank;
}
torch::Tensor loss_weights() {
  torch::manual_seed(11);
  return torch::randn({6, 2});
}
std::vector<torch::Tensor> summands(int rank) {
  const double r = rank + 1;
  return {torch::arange(6, torch::kFloat).view({2, 3}) * r, torch::Tensor(),
          torch::linspace(-1, 1, 4, torch::kDouble) * r,
          (torch::arange(5, torch::kFloat) * r).to(torch::kBFloat16),
          torch::tensor(std::vector<int64_t>{int64_t{1} << 40, -3, 7}) * static_cast<int64_t>(r)};
}
std::vector<torch::Tensor> parameters_of(int rank) {
  torch::manual_seed(100 + rank);
  return {torch::randn({3, 4}).requires_grad_(true), torch::Tensor(), torch::randn({7}).to(torch::kBFloat16),
          torch::randint(0, 1000, {2}, torch::kLong),
          torch::randn({4, 3}).t()};  // the last is not contiguous
}

TEST(DistributedChild, Collectives) {
  if (!is_child()) GTEST_SKIP() << "runs as a rank of DistributedMultiProcess.Collectives";
  const DistEnv env = dist_env_from_environment();
  Distributed dist = Distributed::init(env, torch::kCPU, std::chrono::seconds(20));
  const int r = dist.rank();
  ASSERT_EQ(dist.world_size(), 2);
  ASSERT_EQ(dist.backend(), "gloo");
  std::vector<torch::Tensor> results;

  // gather_rows with autograd through the local rows only.
  const torch::Tensor x = rows_of(r).requires_grad_(true);
  const torch::Tensor gathered = dist.gather_rows(x);
  (gathered * loss_weights()).sum().backward();
  results.push_back(gathered.detach());
  results.push_back(x.grad());
  results.push_back(dist.gather_rows(rows_of(r).to(torch::kBFloat16) / 3));  // raw bytes: exact for bf16

  std::vector<torch::Tensor> sums = summands(r);
  dist.all_reduce_sum_(sums);
  EXPECT_FALSE(sums[1].defined());
  for (const torch::Tensor& t : sums)
    if (t.defined()) results.push_back(t);

  std::vector<torch::Tensor> params = parameters_of(r);
  dist.broadcast_(params);
  for (const torch::Tensor& t : params)
    if (t.defined()) results.push_back(t.detach().contiguous());

  const std::vector<int64_t> ints = dist.all_gather_int64({r, 10 + r, -(int64_t{1} << 50) * r});
  results.push_back(torch::tensor(ints, torch::kLong));
  results.push_back(torch::tensor(
      {dist.all_reduce_max(r + 0.5), dist.all_reduce_sum(r + 0.25), dist.all_reduce_max(-1.0 - r)},
      torch::kDouble));
  dist.barrier();

  // Mismatches are errors on every rank, and the group stays usable after them.
  std::string message = test::error_of([&] { dist.gather_rows(torch::zeros({r + 1, 2})); });
  EXPECT_NE(message.find("gather_rows failed on rank " + std::to_string(r)), std::string::npos) << message;
  EXPECT_NE(message.find("rank 1 has Float [2, 2]"), std::string::npos) << message;
  message = test::error_of([&] {
    dist.all_reduce_sum_(r == 0 ? std::vector<torch::Tensor>{torch::zeros({2}), torch::Tensor()}
                                : std::vector<torch::Tensor>{torch::Tensor(), torch::zeros({2})});
  });
  EXPECT_NE(message.find("all_reduce_sum_ (layout check) failed"), std::string::npos) << message;
  message = test::error_of([&] { dist.all_gather_int64(std::vector<int64_t>(r + 1, 0)); });
  EXPECT_NE(message.find("all_gather_int64 failed"), std::string::npos) << message;
  EXPECT_EQ(dist.all_reduce_sum(1.0), 2.0);

  torch::save(results,
              (fs::path(std::getenv("FLAME_DIST_OUT")) / ("rank" + std::to_string(r) + ".pt")).string());
}

TEST(DistributedMultiProcess, Collectives) {
  const fs::path dir = test::fresh_temp_dir();
  run_ranks("Collectives", dir);
  if (HasFailure()) return;

  const torch::Tensor w = loss_weights();
  const std::vector<torch::Tensor> sum0 = summands(0), sum1 = summands(1);
  const std::vector<torch::Tensor> root = parameters_of(0);
  for (int r = 0; r < 2; ++r) {
    const std::vector<torch::Tensor> res = load_results(dir, r);
    ASSERT_EQ(res.size(), 13u);
    const std::string at = " on rank " + std::to_string(r);
    expect_equal(res[0], torch::cat({rows_of(0), rows_of(1)}), "gather_rows" + at);
    expect_equal(res[1], w.slice(0, 3 * r, 3 * r + 3), "x.grad (local rows of w)" + at);
    expect_equal(res[2], torch::cat({rows_of(0), rows_of(1)}).to(torch::kBFloat16) / 3,
                 "bf16 gather_rows" + at);
    expect_equal(res[3], sum0[0] + sum1[0], "fp32 sum" + at);
    expect_equal(res[4], sum0[2] + sum1[2], "fp64 sum" + at);
    expect_equal(res[5], (sum0[3].to(torch::kFloat) + sum1[3].to(torch::kFloat)).to(torch::kBFloat16),
                 "bf16 sum" + at);
    expect_equal(res[6], sum0[4] + sum1[4], "int64 sum" + at);
    expect_equal(res[7], root[0].detach(), "broadcast fp32" + at);
    expect_equal(res[8], root[2], "broadcast bf16" + at);
    expect_equal(res[9], root[3], "broadcast int64" + at);
    expect_equal(res[10], root[4].contiguous(), "broadcast non-contiguous" + at);
    expect_equal(res[11], torch::tensor(std::vector<int64_t>{0, 10, 0, 1, 11, -(int64_t{1} << 50)}),
                 "all_gather_int64" + at);
    expect_equal(res[12], torch::tensor({1.5, 1.5, -1.0}, torch::kDouble), "all_reduce max/sum" + at);
  }
}

TEST(DistributedChild, PeerExitsEarly) {
  if (!is_child()) GTEST_SKIP() << "runs as a rank of DistributedMultiProcess.PeerExitingEarlyFailsTheOther";
  Distributed dist = Distributed::init(dist_env_from_environment(), torch::kCPU, std::chrono::seconds(5));
  dist.barrier();
  if (dist.rank() == 1) return;  // leaves without the collective rank 0 is about to start
  const auto start = Clock::now();
  const std::string message = test::error_of([&] { dist.all_reduce_sum_({torch::ones({1000})}); });
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::ofstream(fs::path(std::getenv("FLAME_DIST_OUT")) / "error.txt") << message << "\n" << seconds << "\n";
}

TEST(DistributedMultiProcess, PeerExitingEarlyFailsTheOther) {
  const fs::path dir = test::fresh_temp_dir();
  run_ranks("PeerExitsEarly", dir);
  if (HasFailure()) return;
  std::istringstream in(read_text(dir / "error.txt"));
  std::string message;
  double seconds = 0;
  std::getline(in, message);
  in >> seconds;
  EXPECT_NE(message.find("distributed all_reduce_sum_"), std::string::npos) << message;
  EXPECT_NE(message.find("failed on rank 0 of 2"), std::string::npos) << message;
  EXPECT_LT(seconds, 10.0) << message;
}

// ---------------------------------------------------------------- scripts/launch

// Runs a shell command line, returning its exit status and combined output.
std::pair<int, std::string> run_shell(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

const std::string kLaunch = std::string(FLAME_SOURCE_DIR) + "/scripts/launch";

TEST(DistributedLaunch, StartsRanksWithTheirEnvironment) {
  const auto [status, output] =
      run_shell(kLaunch +
                " --nproc 2 --master-port 23456 -- bash -c "
                "'echo $RANK/$WORLD_SIZE/$LOCAL_RANK/$MASTER_ADDR/$MASTER_PORT; echo err$RANK >&2'");
  EXPECT_EQ(status, 0) << output;
  for (const char* line : {"[rank 0] 0/2/0/127.0.0.1/23456\n", "[rank 1] 1/2/1/127.0.0.1/23456\n",
                           "[rank 0] err0\n", "[rank 1] err1\n"})
    EXPECT_NE(output.find(line), std::string::npos) << line << " not in:\n" << output;
}

TEST(DistributedLaunch, PicksAFreePortAndSetsThreads) {
  const auto [status, output] = run_shell(
      "env -u OMP_NUM_THREADS " + kLaunch +
      " --nproc 1 -- bash -c 'echo port=$MASTER_PORT; echo omp=$OMP_NUM_THREADS; echo cores=$(nproc)'");
  EXPECT_EQ(status, 0) << output;
  const size_t cores_at = output.find("cores=");
  ASSERT_NE(cores_at, std::string::npos) << output;
  const int cores = std::atoi(output.c_str() + cores_at + 6);
  EXPECT_NE(output.find("omp=" + std::to_string(std::max(1, cores)) + "\n"), std::string::npos) << output;
  const size_t at = output.find("port=");
  ASSERT_NE(at, std::string::npos) << output;
  const int port = std::atoi(output.c_str() + at + 5);
  EXPECT_GT(port, 0) << output;
  EXPECT_LE(port, 65535) << output;
}

TEST(DistributedLaunch, FailureStopsTheOthersAndPropagatesTheStatus) {
  const auto start = Clock::now();
  const auto [status, output] = run_shell(
      kLaunch + " --nproc 2 -- bash -c 'if [ $RANK = 1 ]; then exit 3; fi; sleep 30; echo survived'");
  EXPECT_EQ(status, 3) << output;
  EXPECT_EQ(output.find("survived"), std::string::npos) << output;
  EXPECT_NE(output.find("rank 1 exited with status 3"), std::string::npos) << output;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

// Numbers are checked as text: bash arithmetic wrapped a 20-digit --nproc
// (starting ranks without end) or --master-port (2^64 + 1 became port 1), and
// read "08" as bad octal, warned and went on with the port unchecked.
TEST(DistributedLaunch, RefusesNumbersOutOfRange) {
  for (const std::string args :
       {"--nproc 0", "--nproc -1", "--nproc 1.5", "--nproc 99999999999999999999", "--nproc 2000",
        "--nproc 08", "--nproc 1 --master-port 18446744073709551617", "--nproc 1 --master-port 0",
        "--nproc 1 --master-port 080", "--nproc 1 --master-port 65536", "--nproc 1 --master-port nan"}) {
    const auto [status, output] = run_shell(kLaunch + " " + args + " -- echo launched-ok");
    EXPECT_EQ(status, 2) << args << ": " << output;
    EXPECT_EQ(output.find("launched-ok"), std::string::npos) << args << ": " << output;
    const std::string flag = args.find("master-port") != std::string::npos ? "--master-port" : "--nproc";
    EXPECT_NE(output.find("launch: " + flag + " must be"), std::string::npos) << args << ": " << output;
  }
}

}  // namespace
}  // namespace flame::train
