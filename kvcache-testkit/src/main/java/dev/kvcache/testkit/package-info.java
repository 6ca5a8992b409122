/** The reference model of the manager, for property tests of an engine's own use of kvcache. */
package dev.kvcache.testkit;
