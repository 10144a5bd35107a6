/* uc-manifest: update-client-hub's manifest-manager as a command-line oracle for v1 manifests.
 * The KCM stand-in holds what a factory tool would have provisioned (mbed.UpdateAuthCert,
 * mbed.VendorId, mbed.ClassId); the manifest is inserted as the hub inserts it, the scheduler runs
 * until the manifest manager reports, and the verdict is printed by the hub's own error name.
 *
 *   uc-manifest CERT_DER VENDOR_ID_HEX CLASS_ID_HEX MANIFEST
 *
 * Prints "accepted timestamp=N size=N hash=HEX uri=TEXT" and exits 0, or "refused NAME" and
 * exits 1; usage errors exit 2. */
#include "harness.h"
#include "update-client-common/arm_uc_common.h"
#include "update-client-common/arm_uc_scheduler.h"
#include "update-client-manifest-manager/update-client-manifest-manager.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hub's download buffers hold the certificate while it is checked (ARM_UC_BUFFER_SIZE). */
static uint8_t certificate_storage_bytes[ARM_UC_BUFFER_SIZE];

static volatile int manifest_manager_reports = 0;
static volatile uintptr_t manifest_manager_last_event = 0;

static void manifest_manager_event(uintptr_t event)
{
    manifest_manager_last_event = event;
    manifest_manager_reports++;
}

/* Runs the scheduler until the manifest manager has reported `wanted` events. */
static int run_until_reports(int wanted)
{
    for (int round = 0; round < 100000 && manifest_manager_reports < wanted; round++) {
        if (!ARM_UC_ProcessSingleCallback() && manifest_manager_reports < wanted) {
            if (ARM_UC_SchedulerGetQueuedCount() == 0) {
                return 0;
            }
        }
    }
    return manifest_manager_reports >= wanted;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: uc-manifest CERT_DER VENDOR_ID_HEX CLASS_ID_HEX MANIFEST\n");
        return 2;
    }
    size_t certificate_size = 0;
    uint8_t *certificate = harness_read_file(argv[1], &certificate_size);
    uint8_t vendor_id[16], class_id[16];
    harness_hex_exact("VENDOR_ID_HEX", argv[2], vendor_id, sizeof(vendor_id));
    harness_hex_exact("CLASS_ID_HEX", argv[3], class_id, sizeof(class_id));
    size_t manifest_size = 0;
    uint8_t *manifest = harness_read_file(argv[4], &manifest_size);

    harness_kcm_put("mbed.UpdateAuthCert", 1, certificate, certificate_size);
    harness_kcm_put("mbed.VendorId", 0, vendor_id, sizeof(vendor_id));
    harness_kcm_put("mbed.ClassId", 0, class_id, sizeof(class_id));

    ARM_UC_SchedulerInit();
    static arm_uc_mmContext_t manifest_manager_context;
    arm_uc_mmContext_t *context = &manifest_manager_context;
    arm_uc_error_t result = ARM_UC_mmInit(&context, manifest_manager_event, NULL);
    if (result.code != ERR_NONE || !run_until_reports(1)) {
        fprintf(stderr, "manifest manager init failed: %s\n", ARM_UC_err2Str(result));
        return 2;
    }

    arm_uc_buffer_t manifest_buffer = {
        .size_max = (uint32_t)manifest_size, .size = (uint32_t)manifest_size, .ptr = manifest
    };
    arm_uc_buffer_t certificate_storage = {
        .size_max = sizeof(certificate_storage_bytes), .size = 0, .ptr = certificate_storage_bytes
    };
    result = ARM_UC_mmInsert(&context, &manifest_buffer, &certificate_storage, NULL);
    if (result.code != ERR_NONE) {
        printf("refused %s\n", ARM_UC_err2Str(result));
        return 1;
    }
    if (!run_until_reports(2)) {
        fprintf(stderr, "manifest manager never reported on the insert\n");
        return 2;
    }
    if (manifest_manager_last_event != ARM_UC_MM_RC_DONE) {
        fprintf(stderr, "uc-manifest: the insert (verification) refused the manifest\n");
        printf("refused %s\n", ARM_UC_err2Str(ARM_UC_mmGetError()));
        return 1;
    }

    /* What the hub reads next: the firmware information of the accepted manifest. */
    static manifest_firmware_info_t info;
    memset(&info, 0, sizeof(info));
    if (manifest_size > sizeof(info.manifestBuffer)) {
        printf("refused manifest-too-large: %zu bytes, the hub keeps at most %zu\n", manifest_size,
               sizeof(info.manifestBuffer));
        return 1;
    }
    memcpy(info.manifestBuffer, manifest, manifest_size);
    info.manifestSize = (uint32_t)manifest_size;
    result = ARM_UC_mmFetchFirmwareInfo(&context, &info, NULL);
    /* The manifest manager answers a firmware-information fetch with NEED_FW (go get it). */
    if (result.code != ERR_NONE || !run_until_reports(3) || manifest_manager_last_event != ARM_UC_MM_RC_NEED_FW) {
        fprintf(stderr, "uc-manifest: reading the firmware information failed\n");
        printf("refused %s\n", ARM_UC_err2Str(ARM_UC_mmGetError()));
        return 1;
    }
    printf("accepted timestamp=%" PRIu64 " size=%" PRIu32 " hash=", info.timestamp, info.size);
    harness_print_hex(info.hash.ptr, info.hash.size);
    printf(" uri=%.*s\n", (int)info.uri.size, (const char *)info.uri.ptr);
    return 0;
}
