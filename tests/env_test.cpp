// Strict integer switches from the environment (core/env.h): what the CUDA backend's tuning and
// test switches read.
#include "core/env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace squish {
namespace {

constexpr const char* kName = "SQUISH_TEST_ENV_SWITCH";

struct Unset {
  ~Unset() { unsetenv(kName); }
};

TEST(Env, IntegerParsesWholeDecimalNumbersOnly) {
  const Unset unset;
  unsetenv(kName);
  EXPECT_FALSE(env_integer(kName).has_value());
  for (const char* bad : {"", "abc", "16x", "1.5", " ", "99999999999999999999999"}) {
    setenv(kName, bad, 1);
    EXPECT_FALSE(env_integer(kName).has_value()) << '"' << bad << '"';
  }
  setenv(kName, "16", 1);
  EXPECT_EQ(env_integer(kName), 16);
  setenv(kName, "-3", 1);
  EXPECT_EQ(env_integer(kName), -3);
  setenv(kName, "+7", 1);
  EXPECT_EQ(env_integer(kName), 7);
}

TEST(Env, OutOfRangeOrUnsetGivesTheDefault) {
  const Unset unset;
  unsetenv(kName);
  EXPECT_EQ(env_int_in(kName, 1, 4, 0), 0);
  setenv(kName, "4", 1);
  EXPECT_EQ(env_int_in(kName, 1, 4, 0), 4);
  setenv(kName, "5", 1);
  EXPECT_EQ(env_int_in(kName, 1, 4, 0), 0);
  setenv(kName, "0", 1);
  EXPECT_EQ(env_int_in(kName, 1, 4, 9), 9);
  setenv(kName, "0", 1);  // a "0 turns it off" switch
  EXPECT_EQ(env_int_in(kName, 0, 1, 1), 0);
  setenv(kName, "off", 1);  // not a number: the default, not atoi's 0
  EXPECT_EQ(env_int_in(kName, 0, 1, 1), 1);
}

// A value set but not taken is said on stderr, once per name and value, with what was expected.
TEST(Env, IgnoredValuesAreSaidOnceOnStderr) {
  const Unset unset;
  setenv(kName, "12", 1);
  testing::internal::CaptureStderr();
  EXPECT_EQ(env_one_of(kName, {8, 16}, 8), 8);
  EXPECT_EQ(env_one_of(kName, {8, 16}, 8), 8);
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            std::string("squish: ") + kName + "=12 ignored (expected one of 8, 16); using 8\n");
  setenv(kName, "7x", 1);
  testing::internal::CaptureStderr();
  EXPECT_EQ(env_int_in(kName, 0, 4, 1), 1);
  EXPECT_EQ(
      testing::internal::GetCapturedStderr(),
      std::string("squish: ") + kName + "=7x ignored (expected an integer from 0 to 4); using 1\n");
  // Taken values, and unset or empty ones, say nothing.
  testing::internal::CaptureStderr();
  setenv(kName, "3", 1);
  EXPECT_EQ(env_int_in(kName, 0, 4, 1), 3);
  setenv(kName, "", 1);
  EXPECT_EQ(env_int_in(kName, 0, 4, 1), 1);
  unsetenv(kName);
  EXPECT_EQ(env_one_of(kName, {8, 16}, 8), 8);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Env, OneOfTakesOnlyTheListedValues) {
  const Unset unset;
  setenv(kName, "16", 1);
  EXPECT_EQ(env_one_of(kName, {8, 16}, 8), 16);
  setenv(kName, "12", 1);
  EXPECT_EQ(env_one_of(kName, {8, 16}, 8), 8);
  setenv(kName, "16 ", 1);
  EXPECT_EQ(env_one_of(kName, {8, 16}, 8), 8);
  unsetenv(kName);
  EXPECT_EQ(env_one_of(kName, {8, 16, 32}, 16), 16);
}

}  // namespace
}  // namespace squish
