<?php

/**
 * hostwright_ChangePassword against the gateway's change-password command
 * (POST /v1/services/{id}/change-password). Its own group: the pytest run names it apart.
 *
 * @group change-password
 */
class ChangePasswordTest extends GatewayTestCase
{
    public function testTheNewPasswordIsRecordedOnceAndNeverLogged(): void
    {
        $params = $this->activeService(5301);
        $new = 'Changed-5301-' . bin2hex(random_bytes(4));
        $this->passwords[] = $new;
        $changed = array_replace($params, ['password' => $new]);
        self::assertSame('success', hostwright_ChangePassword($changed));
        self::assertSame('success', hostwright_ChangePassword($changed)); // WHMCS retrying it
        self::assertSame(1, $this->commandsRecorded(5301, 'change-password'));
        $this->waitForStatus(5301, 'active');
        self::assertNull($this->service(5301)['last_error']);

        $again = 'Changed-again-' . bin2hex(random_bytes(4));
        $this->passwords[] = $again;
        self::assertSame('success', hostwright_ChangePassword(array_replace($params, ['password' => $again])));
        self::assertSame(2, $this->commandsRecorded(5301, 'change-password'));

        self::assertStringContainsString('password must be 8 to 128 characters', hostwright_ChangePassword(array_replace($params, ['password' => 'short'])));
        self::assertSame('no new password was given', hostwright_ChangePassword(array_replace($params, ['password' => ''])));
    }
}
