/* uc-header: update-client-hub's own metadata-header code (arm_uc_metadata_header_v2.c) as a
 * command-line oracle. Creates and parses the internal v2 header (112 bytes, CRC-32) and the
 * external v2 header (296 bytes, HMAC-SHA256 keyed from the root of trust given in hex).
 *
 *   uc-header create-internal VERSION SIZE SHA256_HEX CAMPAIGN_HEX OUT
 *   uc-header create-external ROT_HEX VERSION SIZE SHA256_HEX CAMPAIGN_HEX OUT
 *   uc-header parse-internal FILE
 *   uc-header parse-external ROT_HEX FILE
 *
 * parse-* print "accepted version=N size=N hash=HEX campaign=HEX" and exit 0, or print
 * "refused NAME" (the hub's error name) and exit 1; usage errors exit 2. */
#include "harness.h"
#include "update-client-metadata-header/arm_uc_metadata_header_v2.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: uc-header create-internal VERSION SIZE SHA256_HEX CAMPAIGN_HEX OUT\n"
            "       uc-header create-external ROT_HEX VERSION SIZE SHA256_HEX CAMPAIGN_HEX OUT\n"
            "       uc-header parse-internal FILE\n"
            "       uc-header parse-external ROT_HEX FILE\n");
    exit(2);
}

static uint64_t parse_u64(const char *what, const char *text)
{
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 0);
    if (end == text || *end != '\0') {
        fprintf(stderr, "%s: not a number: %s\n", what, text);
        exit(2);
    }
    return (uint64_t)value;
}

static void fill_details(arm_uc_firmware_details_t *details, char **args)
{
    memset(details, 0, sizeof(*details));
    details->version = parse_u64("VERSION", args[0]);
    details->size = parse_u64("SIZE", args[1]);
    harness_hex_exact("SHA256_HEX", args[2], details->hash, sizeof(details->hash));
    harness_hex_exact("CAMPAIGN_HEX", args[3], details->campaign, sizeof(details->campaign));
}

static int write_output(const char *path, const arm_uc_buffer_t *buffer)
{
    FILE *file = fopen(path, "wb");
    if (file == NULL || fwrite(buffer->ptr, 1, buffer->size, file) != buffer->size || fclose(file) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return 2;
    }
    return 0;
}

static int report(arm_uc_error_t result, const arm_uc_firmware_details_t *details)
{
    if (result.code != ERR_NONE) {
        printf("refused %s\n", ARM_UC_err2Str(result));
        return 1;
    }
    printf("accepted version=%" PRIu64 " size=%" PRIu64 " hash=", details->version, details->size);
    harness_print_hex(details->hash, sizeof(details->hash));
    printf(" campaign=");
    harness_print_hex(details->campaign, sizeof(details->campaign));
    printf("\n");
    return 0;
}

static const uint8_t *read_header(const char *path, size_t needed)
{
    size_t size = 0;
    uint8_t *data = harness_read_file(path, &size);
    if (size < needed) {
        printf("refused short: %zu bytes, a header has %zu\n", size, needed);
        exit(1);
    }
    return data;
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    const char *command = argv[1];
    uint8_t rot[16];
    arm_uc_firmware_details_t details;

    if (strcmp(command, "create-internal") == 0 && argc == 7) {
        fill_details(&details, &argv[2]);
        uint8_t header[ARM_UC_INTERNAL_HEADER_SIZE_V2];
        arm_uc_buffer_t buffer = { .size_max = sizeof(header), .size = 0, .ptr = header };
        arm_uc_error_t result = arm_uc_create_internal_header_v2(&details, &buffer);
        if (result.code != ERR_NONE) {
            fprintf(stderr, "create failed: %s\n", ARM_UC_err2Str(result));
            return 1;
        }
        return write_output(argv[6], &buffer);
    }
    if (strcmp(command, "create-external") == 0 && argc == 8) {
        harness_hex_exact("ROT_HEX", argv[2], rot, sizeof(rot));
        harness_set_rot(rot);
        fill_details(&details, &argv[3]);
        uint8_t header[ARM_UC_EXTERNAL_HEADER_SIZE_V2];
        arm_uc_buffer_t buffer = { .size_max = sizeof(header), .size = 0, .ptr = header };
        arm_uc_error_t result = arm_uc_create_external_header_v2(&details, &buffer);
        if (result.code != ERR_NONE) {
            fprintf(stderr, "create failed: %s\n", ARM_UC_err2Str(result));
            return 1;
        }
        return write_output(argv[7], &buffer);
    }
    if (strcmp(command, "parse-internal") == 0 && argc == 3) {
        const uint8_t *header = read_header(argv[2], ARM_UC_INTERNAL_HEADER_SIZE_V2);
        memset(&details, 0, sizeof(details));
        return report(arm_uc_parse_internal_header_v2(header, &details), &details);
    }
    if (strcmp(command, "parse-external") == 0 && argc == 4) {
        harness_hex_exact("ROT_HEX", argv[2], rot, sizeof(rot));
        harness_set_rot(rot);
        const uint8_t *header = read_header(argv[3], ARM_UC_EXTERNAL_HEADER_SIZE_V2);
        memset(&details, 0, sizeof(details));
        return report(arm_uc_parse_external_header_v2(header, &details), &details);
    }
    usage();
    return 2;
}
