/*
 * tools/vlm-serve/imgapi.h — libvlmclient's image functions (0.3) as weak references, so that
 * vlm-serve builds and serves text against a library without them and takes image parts as
 * soon as the library it runs with has them (vsv_have_images()).
 */
#ifndef VSV_IMGAPI_H
#define VSV_IMGAPI_H

#include <stdbool.h>

#include "vlm/vlm.h"

#pragma weak vlm_vision_config_default
#pragma weak vlm_vision_config_load
#pragma weak vlm_image_load_memory
#pragma weak vlm_image_load_file
#pragma weak vlm_image_free
#pragma weak vlm_image_grid
#pragma weak vlm_image_tokens
#pragma weak vlm_request_add_image
#pragma weak vlm_request_add_image_memory
#pragma weak vlm_image_probe_memory
#pragma weak vlm_vision_pixel_dtype

static inline bool vsv_have_images(void)
{
	return vlm_image_load_memory && vlm_image_load_file && vlm_image_free && vlm_image_grid &&
	       vlm_request_add_image && vlm_request_add_image_memory && vlm_image_probe_memory &&
	       vlm_vision_config_load &&
	       vlm_vision_config_default;
}

#endif
