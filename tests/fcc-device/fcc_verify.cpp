// fcc-verify: Imprint's harness around the real FCC library. Run in the working directory of a
// device process that finished a factory session, it opens that device's stored data ("./pal")
// and runs the FCC's own fcc_verify_device_configured_4mbed_cloud(), then prints one line:
//
//   fcc-verify: status <N> <the FCC's error string>
//   fcc-verify: error <the FCC's error info>        (when it has any)
//   fcc-verify: warning <the FCC's warning info>    (when it has any)
//
// Exit code 0 when the status is FCC_STATUS_SUCCESS, 1 otherwise.
#include <stdio.h>
#include <stdlib.h>

#include "factory_configurator_client.h"
#include "fcc_output_info_handler.h"
#include "factory_client_example_utils.h"

static int verify_exit_code = EXIT_FAILURE;

static void verify_task()
{
    if (!fcc_platform_storage_init()) {
        printf("fcc-verify: storage initialisation failed\n");
        return;
    }
    fcc_status_e status = fcc_init();
    if (status != FCC_STATUS_SUCCESS) {
        printf("fcc-verify: fcc_init failed with status %d\n", (int)status);
        return;
    }
    status = fcc_verify_device_configured_4mbed_cloud();
    const char *status_string = fcc_get_fcc_error_string(status);
    printf("fcc-verify: status %d %s\n", (int)status, status_string ? status_string : "");
    const char *error_info = fcc_get_output_error_info();
    if (error_info != NULL && error_info[0] != '\0') {
        printf("fcc-verify: error %s\n", error_info);
    }
    const char *warning_info = fcc_get_output_warning_info();
    if (warning_info != NULL && warning_info[0] != '\0') {
        printf("fcc-verify: warning %s\n", warning_info);
    }
    bool factory_disabled = false;
    if (fcc_is_factory_disabled(&factory_disabled) == FCC_STATUS_SUCCESS) {
        printf("fcc-verify: factory-disabled %s\n", factory_disabled ? "yes" : "no");
    }
    fflush(stdout);
    if (status == FCC_STATUS_SUCCESS) {
        verify_exit_code = EXIT_SUCCESS;
    }
    (void)fcc_finalize();
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!fcc_mbed_trace_initialization() || !fcc_platform_initialization()) {
        printf("fcc-verify: platform initialisation failed\n");
        return EXIT_FAILURE;
    }
    if (!fcc_run_program(&verify_task)) {
        return EXIT_FAILURE;
    }
    fcc_mbed_trace_free();
    return verify_exit_code;
}
