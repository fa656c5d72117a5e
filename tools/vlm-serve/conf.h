/*
 * tools/vlm-serve/conf.h — vlm-serve's settings: one table serves the config file, the command
 * line and --help (the shape of vlmd's daemon/conf.c, smaller: no run-time changes).
 */
#ifndef VSV_CONF_H
#define VSV_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vsv_cfg {
	VSV_CFG_MODEL_DIR,
	VSV_CFG_SERVED_MODEL_NAME,
	VSV_CFG_HOST,
	VSV_CFG_PORT,
	VSV_CFG_SOCKET,
	VSV_CFG_API_KEY,
	VSV_CFG_MIN_PIXELS,
	VSV_CFG_MAX_PIXELS,
	VSV_CFG_PIXEL_DTYPE,
	VSV_CFG_MAX_CONCURRENT,
	VSV_CFG_MAX_CONNECTIONS,
	VSV_CFG_CHAT_TEMPLATE,
	VSV_CFG_ALLOWED_LOCAL_MEDIA_PATH,
	VSV_CFG_ALLOWED_MEDIA_DOMAINS,
	VSV_CFG_MEDIA_MAX_BYTES,
	VSV_CFG_MAX_IMAGES,
	VSV_CFG_MEDIA_TIMEOUT_MS,
	VSV_CFG_MAX_BODY,
	VSV_CFG_IDLE_TIMEOUT,
	VSV_CFG_ARENA,
	VSV_CFG_LOG_LEVEL,
	VSV_CFG__N
};

struct vsv_conf;

/*
 * Parses argv (--config FILE first, then every other flag over the file's values). On success
 * *ret owns the settings (vsv_conf_free). Returns 0, 1 when --help/--version was printed (exit
 * 0), -EINVAL with a message in err (usage error), -ENOMEM.
 */
int vsv_conf_parse(int argc, char **argv, struct vsv_conf **ret, char *err, size_t errlen);
void vsv_conf_free(struct vsv_conf *c);
/* A string setting ("" when unset), owned by c. */
const char *vsv_conf_str(const struct vsv_conf *c, enum vsv_cfg k);
/* A number / size setting. */
uint64_t vsv_conf_u64(const struct vsv_conf *c, enum vsv_cfg k);

#endif
