/** A shared KV tier and KV events over Redis or Valkey, through Lettuce. */
package dev.kvcache.redis;
