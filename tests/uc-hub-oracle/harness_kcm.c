/* A stand-in for the Key and Configuration Manager (KCM) the hub reads: a small in-memory store
 * filled by the oracle's main from files and arguments, with KCM's status codes. */
#include "harness.h"
#include "key-config-manager/key_config_manager.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS_KCM_ITEMS 8
#define HARNESS_KCM_NAME_MAX 64

struct harness_kcm_item {
    char name[HARNESS_KCM_NAME_MAX];
    kcm_item_type_e type;
    uint8_t *data;
    size_t size;
};

static struct harness_kcm_item harness_kcm_items[HARNESS_KCM_ITEMS];
static size_t harness_kcm_count = 0;

static struct harness_kcm_item *harness_kcm_find(const uint8_t *name, size_t name_len, kcm_item_type_e type)
{
    for (size_t index = 0; index < harness_kcm_count; index++) {
        struct harness_kcm_item *item = &harness_kcm_items[index];
        if (item->type == type && strlen(item->name) == name_len && memcmp(item->name, name, name_len) == 0) {
            return item;
        }
    }
    return NULL;
}

kcm_status_e kcm_item_store(const uint8_t *kcm_item_name, size_t kcm_item_name_len,
                            kcm_item_type_e kcm_item_type, bool kcm_item_is_factory,
                            const uint8_t *kcm_item_data, size_t kcm_item_data_size,
                            const kcm_security_desc_s kcm_item_info)
{
    (void)kcm_item_is_factory;
    (void)kcm_item_info;
    if (kcm_item_name == NULL || kcm_item_name_len == 0 || kcm_item_name_len >= HARNESS_KCM_NAME_MAX ||
            (kcm_item_data == NULL && kcm_item_data_size != 0)) {
        return KCM_STATUS_INVALID_PARAMETER;
    }
    if (harness_kcm_find(kcm_item_name, kcm_item_name_len, kcm_item_type) != NULL) {
        return KCM_STATUS_FILE_EXIST;
    }
    if (harness_kcm_count == HARNESS_KCM_ITEMS) {
        return KCM_STATUS_OUT_OF_MEMORY;
    }
    struct harness_kcm_item *item = &harness_kcm_items[harness_kcm_count];
    memcpy(item->name, kcm_item_name, kcm_item_name_len);
    item->name[kcm_item_name_len] = '\0';
    item->type = kcm_item_type;
    item->data = malloc(kcm_item_data_size ? kcm_item_data_size : 1);
    if (item->data == NULL) {
        return KCM_STATUS_OUT_OF_MEMORY;
    }
    if (kcm_item_data_size) {
        memcpy(item->data, kcm_item_data, kcm_item_data_size);
    }
    item->size = kcm_item_data_size;
    harness_kcm_count++;
    return KCM_STATUS_SUCCESS;
}

kcm_status_e kcm_item_get_data(const uint8_t *kcm_item_name, size_t kcm_item_name_len,
                               kcm_item_type_e kcm_item_type, uint8_t *kcm_item_data_out,
                               size_t kcm_item_data_max_size, size_t *kcm_item_data_act_size_out)
{
    if (kcm_item_name == NULL || kcm_item_data_act_size_out == NULL) {
        return KCM_STATUS_INVALID_PARAMETER;
    }
    struct harness_kcm_item *item = harness_kcm_find(kcm_item_name, kcm_item_name_len, kcm_item_type);
    if (item == NULL) {
        return KCM_STATUS_ITEM_NOT_FOUND;
    }
    if (item->size > kcm_item_data_max_size) {
        return KCM_STATUS_INSUFFICIENT_BUFFER;
    }
    if (item->size) {
        memcpy(kcm_item_data_out, item->data, item->size);
    }
    *kcm_item_data_act_size_out = item->size;
    return KCM_STATUS_SUCCESS;
}

void harness_kcm_put(const char *name, int is_certificate, const uint8_t *data, size_t size)
{
    kcm_status_e status = kcm_item_store((const uint8_t *)name, strlen(name),
                                         is_certificate ? KCM_CERTIFICATE_ITEM : KCM_CONFIG_ITEM,
                                         true, data, size, NULL);
    if (status != KCM_STATUS_SUCCESS) {
        fprintf(stderr, "storing KCM item %s failed: status %d\n", name, (int)status);
        exit(2);
    }
}
