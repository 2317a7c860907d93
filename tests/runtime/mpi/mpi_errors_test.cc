// How kolo meets MPI errors, under Open MPI and MPICH alike: kolo's own
// communicators return errors instead of aborting the job, the
// application's handler on MPI_COMM_WORLD stays as the application set it,
// and MpiError turns MPICH's multi-line error stacks into one line that
// names the call and keeps the detail.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>

#include "runtime/common/mpi_context.h"

namespace kolo {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(MpiErrors, KolosCommunicatorsReturnErrorsAndWorldIsLeftAlone) {
  MPI_Errhandler before = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &before);
  StatusOr<std::unique_ptr<MpiContext>> context = MpiContext::Create("");
  ASSERT_TRUE(context.ok()) << context.status();
  for (MPI_Comm comm : {(*context)->control(), (*context)->data(),
                        (*context)->local(), (*context)->cross()}) {
    MPI_Errhandler handler = MPI_ERRHANDLER_NULL;
    MPI_Comm_get_errhandler(comm, &handler);
    EXPECT_EQ(handler, MPI_ERRORS_RETURN);
    MPI_Errhandler_free(&handler);
  }
  // A send to a rank that does not exist comes back as a code.
  int x = 0;
  const int code =
      MPI_Send(&x, 1, MPI_INT, (*context)->size() + 5, 0, (*context)->data());
  EXPECT_NE(code, MPI_SUCCESS);
  const std::string message(MpiError("MPI_Send", code).message());
  EXPECT_THAT(message, StartsWith("MPI_Send failed: "));
  EXPECT_THAT(message, Not(HasSubstr("\n")));
  // Open MPI: "MPI_ERR_RANK: invalid rank"; MPICH's stack ends with
  // "Invalid rank has value 7 but must be nonnegative and less than 2".
  EXPECT_THAT(message, AnyOf(HasSubstr("invalid rank"),
                             HasSubstr("Invalid rank has value")));
  context->reset();

  MPI_Errhandler after = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &after);
  EXPECT_EQ(after, before);
  MPI_Errhandler_free(&before);
  MPI_Errhandler_free(&after);
}

}  // namespace
}  // namespace kolo

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  // The application's own choice, which kolo must not change.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  const int result = RUN_ALL_TESTS();
  MPI_Finalize();
  return result;
}
