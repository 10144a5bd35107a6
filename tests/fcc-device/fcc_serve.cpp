// fcc-serve: Imprint's harness around the real FCC library for what the upstream example
// application cannot do: serve a factory session on a device's EXISTING storage. The example
// wipes the storage at the first message of every process (fcc_storage_delete()), so a device
// that finished its factory process (Disable) looks new to it; a real product keeps its storage
// across resets. This loop is the example's factory_flow_task without that wipe: the same comm
// interface (fce_create_comm_interface, loopback, a random port it prints), the same
// fcc_bundle_handler() and response handling, until the session ends. With --keep-serving it
// serves one session after another on the same storage (a product whose factory loop starts
// again after each session, as after a reset), until a message is refused or it is killed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "factory_configurator_client.h"
#include "ftcd_comm_base.h"
#include "fce_common_helper.h"
#include "fcc_malloc.h"
#include "fcc_bundle_handler.h"
#include "mbed-trace/mbed_trace.h"
#include "factory_client_example_utils.h"

static int serve_exit_code = EXIT_FAILURE;
static bool keep_serving = false;

static void serve_task()
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!fcc_platform_storage_init() || fcc_init() != FCC_STATUS_SUCCESS) {
        printf("fcc-serve: initialisation failed\n");
        return;
    }
    FtcdCommBase *ftcd_comm = fce_create_comm_interface();
    if (ftcd_comm == NULL || !ftcd_comm->init()) {
        printf("fcc-serve: communication interface failed\n");
        (void)fcc_finalize();
        return;
    }
    mbed_tracef(TRACE_LEVEL_CMD, "fcsv", "Factory flow begins...");
    while (true) {
        uint8_t *input_message = NULL;
        uint32_t input_message_size = 0;
        uint8_t *response_message = NULL;
        size_t response_message_size = 0;
        ftcd_comm_status_e comm_status = ftcd_comm->wait_for_message(&input_message, &input_message_size);
        if (comm_status == FTCD_COMM_STATUS_SUCCESS) {
            fcc_status_e fcc_status = fcc_bundle_handler(input_message, input_message_size, &response_message, &response_message_size);
            if (fcc_status == FCC_STATUS_BUNDLE_RESPONSE_ERROR || response_message == NULL || response_message_size == 0) {
                comm_status = FTCD_COMM_FAILED_TO_PROCESS_DATA;
            }
        }
        ftcd_comm_status_e send_status = ftcd_comm->send_response(response_message, response_message_size, comm_status);
        if (send_status != FTCD_COMM_STATUS_SUCCESS) {
            ftcd_comm->send_response(NULL, 0, send_status);
        }
        if (input_message) {
            fcc_free(input_message);
        }
        if (response_message) {
            fcc_free(response_message);
        }
        if (comm_status == FTCD_COMM_STATUS_SUCCESS && send_status == FTCD_COMM_STATUS_SUCCESS) {
            serve_exit_code = EXIT_SUCCESS;
        }
        // A refused message (factory disabled) also ends what this device will do.
        if ((fcc_is_session_finished() && !keep_serving) || comm_status == FTCD_COMM_FAILED_TO_PROCESS_DATA) {
            break;
        }
    }
    ftcd_comm->finish();
    delete ftcd_comm;
    fce_destroy_comm_interface();
    (void)fcc_finalize();
}

int main(int argc, char **argv)
{
    keep_serving = argc > 1 && strcmp(argv[1], "--keep-serving") == 0;
    if (!fcc_mbed_trace_initialization() || !fcc_platform_initialization()) {
        return EXIT_FAILURE;
    }
    if (!fcc_run_program(&serve_task)) {
        return EXIT_FAILURE;
    }
    fcc_mbed_trace_free();
    return serve_exit_code;
}
